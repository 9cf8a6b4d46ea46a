"""The webhook outbox, as subscribers/dispatch.py does it for owed emails.

`dispatch_due` (beat, every two seconds, plus a nudge after each commit that wrote a message)
claims due rows pending -> queued with SELECT … FOR UPDATE SKIP LOCKED and publishes their ids;
`deliver` claims each row queued -> sending just before its POST, so a doubled task finds
nothing. 2xx: delivered. Anything else: pending again after a delay that doubles from
WEBHOOK_RETRY_BASE_SECONDS to WEBHOOK_RETRY_MAX_SECONDS, failed once WEBHOOK_RETRY_FOR_SECONDS
have passed since the first failure. A row whose worker died mid-POST returns to pending: the
receiver may get it twice, with the same webhook-id, which is how it dedupes.
"""

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from http.client import HTTPException

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from ownedaudience import outbox

from . import client
from .events import nudge_after_commit
from .models import Attempt, Endpoint, Message

log = logging.getLogger(__name__)

CLAIM_SIZE = 500  # rows claimed per dispatch round
TASK_SIZE = 10  # messages per deliver task: a slow endpoint holds a worker at most TASK_SIZE × timeout
MAX_ROUNDS = 20
QUEUED_LEASE = timedelta(minutes=10)  # published but never picked up: the broker lost it

Status = Message.Status


def sending_lease():
    """A POST (connect, send, answer) takes at most about two timeouts; a row held longer lost its worker."""
    return timedelta(seconds=max(60.0, 3 * settings.WEBHOOK_TIMEOUT_SECONDS))


def retry_delay(attempts):
    base = settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(base, settings.WEBHOOK_RETRY_MAX_SECONDS))


def recover_stale(now=None):
    """Queued rows the broker lost and sending rows a dead worker held go back to pending."""
    now = now or timezone.now()
    requeued = Message.objects.filter(status=Status.QUEUED, queued_at__lt=now - QUEUED_LEASE).update(
        status=Status.PENDING, claim=""
    )
    resent = Message.objects.filter(status=Status.SENDING, sending_at__lt=now - sending_lease()).update(
        status=Status.PENDING, claim="", last_error="The worker stopped while sending; sent again (same webhook-id)."
    )
    return requeued, resent


def claim_due(limit=CLAIM_SIZE, now=None):
    """Mark up to `limit` due pending rows of active endpoints queued; returns their ids."""
    now = now or timezone.now()
    due = Message.objects.filter(
        status=Status.PENDING, next_attempt_at__lte=now, endpoint_id__in=Endpoint.objects.filter(active=True).values("id")
    ).order_by("next_attempt_at", "id")
    return outbox.claim_due(due, limit=limit, now=now)


def dispatch_due():
    """Publish every due message to the default queue. Returns how many were handed over."""
    from .tasks import deliver_webhooks

    recover_stale()
    return outbox.dispatch(claim_due, deliver_webhooks, Message, claim_size=CLAIM_SIZE, task_size=TASK_SIZE,
                           rounds=MAX_ROUNDS, what="webhooks")


def body_and_headers(message):
    """The exact bytes posted and the Standard Webhooks headers signing them (signed at each attempt)."""
    body = json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False)
    stamp = int(time.time())
    signature = Webhook(message.endpoint.secret).sign(message.webhook_id, datetime.fromtimestamp(stamp, UTC), body)
    return body.encode(), {"webhook-id": message.webhook_id, "webhook-timestamp": str(stamp),
                           "webhook-signature": signature, "content-type": "application/json"}


def deliver(ids):
    """POST the messages `ids` that are still queued. Returns how many were delivered."""
    delivered, unreachable = 0, set()
    for message_id in sorted(ids):
        if not Message.objects.filter(id=message_id, status=Status.QUEUED).update(
            status=Status.SENDING, sending_at=timezone.now(), attempts=F("attempts") + 1
        ):
            continue  # a doubled task, or someone else has it
        message = Message.objects.select_related("endpoint").filter(id=message_id).first()
        if message is None:
            continue  # erased meanwhile
        if message.endpoint_id in unreachable:
            # It did not answer a moment ago: wait with the one tried, without spending an attempt.
            Message.objects.filter(id=message_id, status=Status.SENDING).update(
                status=Status.PENDING, attempts=F("attempts") - 1,
                next_attempt_at=timezone.now() + retry_delay(message.attempts),
            )
            continue
        code, excerpt, error, permanent, started = None, "", "", False, time.monotonic()
        try:
            body, headers = body_and_headers(message)
            code, excerpt = client.post(message.endpoint.url, body, headers, settings.WEBHOOK_TIMEOUT_SECONDS)
        except client.UnsafeURL as refusal:
            error, permanent = str(refusal), True
        except (OSError, HTTPException, ValueError) as failure:  # no answer: refused, reset, timeout, TLS, DNS
            error = f"{type(failure).__name__}: {failure}"
            unreachable.add(message.endpoint_id)
        duration = int((time.monotonic() - started) * 1000)
        delivered += record(message, code, excerpt, error, duration, permanent=permanent)
    return delivered


def record(message, code, excerpt, error, duration_ms, permanent=False):
    """Write one attempt and what it means for the message. Returns 1 if it was delivered."""
    now = timezone.now()
    ok = code is not None and 200 <= code < 300
    if not ok and not error:
        error = f"HTTP {code}"
    fields = {"last_status_code": code, "last_error": "" if ok else error[:2000], "claim": ""}
    if ok:
        fields.update(status=Status.DELIVERED, delivered_at=now)
    elif permanent or (message.retry_until and now >= message.retry_until):
        fields.update(status=Status.FAILED)
    else:
        fields.update(status=Status.PENDING, next_attempt_at=now + retry_delay(message.attempts),
                      retry_until=message.retry_until or now + timedelta(seconds=settings.WEBHOOK_RETRY_FOR_SECONDS))
    (log.info if ok else log.warning)("webhook %s to %s: %s", message.webhook_id, message.endpoint.url,
                                      code or error)
    try:
        with transaction.atomic():
            # A late 2xx wins even if the lease already gave the row back: no need to send it again.
            statuses = [Status.SENDING, Status.QUEUED, Status.PENDING] if ok else [Status.SENDING]
            Message.objects.filter(id=message.id, status__in=statuses).update(**fields)
            Attempt.objects.create(message_id=message.id, at=now, status_code=code, response=excerpt[:500],
                                   error="" if ok else error[:2000], duration_ms=duration_ms)
    except IntegrityError:
        return 0  # the message was erased while it was being sent
    return int(ok)


def send_again(queryset):
    """Delivered or failed messages go out again: pending, a fresh retry budget, the same webhook-id."""
    count = queryset.filter(status__in=[Status.DELIVERED, Status.FAILED]).update(
        status=Status.PENDING, attempts=0, retry_until=None, next_attempt_at=timezone.now(), claim="",
    )
    if count:
        nudge_after_commit()
    return count
