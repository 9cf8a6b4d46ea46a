"""The endpoint SNS posts SES's feedback to."""

import logging

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

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
