"""Stripe's webhooks: the installation's endpoint and each newsletter's own."""

import logging

from django.http import HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .services import EventRefused, event_apply, event_receive

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request, token=""):
    """400 and nothing stored for a wrong, missing or stale signature; 200 for an event stored and
    applied, or one seen before (a replay changes nothing); 500 when applying failed, so Stripe
    sends it again (the event stays stored with its error)."""
    try:
        event, _ = event_receive(token, request.body, request.headers.get("Stripe-Signature"))
    except EventRefused as error:
        return HttpResponseBadRequest(f"Refused: {error}", content_type="text/plain")
    try:
        event_apply(event.pk)
    except Exception:
        logger.exception("Stripe event %s (%s) could not be applied", event.event_id, event.type)
        return HttpResponse("Stored, not applied yet; send it again.", status=500, content_type="text/plain")
    return HttpResponse("ok", content_type="text/plain")
