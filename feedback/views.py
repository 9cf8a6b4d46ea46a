"""The endpoints SNS posts SES's feedback to, and an SMTP relay posts its bounces to."""

import hmac
import logging

from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import relay as relay_feedback
from . import services, sns

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def ses(request):
    """200 for a message applied or seen before; 400 for a malformed, badly signed or stale message
    or a certificate URL off SNS's hosts; 403 for a topic not configured. SNS does not retry a 4xx,
    so a certificate host or SubscribeURL that did not answer is a 502: SNS sends the message again."""
    try:
        message = sns.verified_message(request.body, request.headers.get("x-amz-sns-message-type", ""))
        outcome = services.message_apply(message)
    except sns.Refused as error:
        logger.warning("Refused an SNS message: %s", error)
        return HttpResponse(f"Refused: {error}", status=error.status, content_type="text/plain")
    except sns.Unreachable as error:
        logger.warning("Could not verify or confirm an SNS message: %s", error)
        return HttpResponse("Try again later.", status=502, content_type="text/plain")
    return HttpResponse(outcome, content_type="text/plain")


# A relay's bounce webhook carries one event; Postmark can add the bounced message's content.
RELAY_MAX_BODY_BYTES = 1024 * 1024


@csrf_exempt
@require_POST
def relay(request, secret):
    """An SMTP relay's bounce webhook (Postmark or Mailgun JSON) at /feedback/relay/<secret>/.

    404 while RELAY_WEBHOOK_SECRET is empty or for any other secret (compared in constant time);
    413 for a body over a megabyte; 400 for a body of no shape we know; 200 "applied" or "replayed".
    """
    expected = settings.RELAY_WEBHOOK_SECRET
    if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
        raise Http404("no such webhook")
    try:
        length = int(request.headers.get("content-length") or 0)
    except ValueError:
        length = 0
    if length > RELAY_MAX_BODY_BYTES:
        return HttpResponse("Too large.", status=413, content_type="text/plain")
    body = request.read(RELAY_MAX_BODY_BYTES + 1)
    if len(body) > RELAY_MAX_BODY_BYTES:
        return HttpResponse("Too large.", status=413, content_type="text/plain")
    try:
        outcome = relay_feedback.payload_apply(body)
    except relay_feedback.Refused as error:
        logger.warning("Refused a relay webhook: %s", error)
        return HttpResponse(f"Refused: {error}", status=400, content_type="text/plain")
    return HttpResponse(outcome, content_type="text/plain")
