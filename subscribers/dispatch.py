"""The transactional outbox: hand owed emails to Celery, and send them exactly once.

A signup writes its OwedEmail row in its own transaction and never waits for the broker.
`dispatch_due` (Celery beat, every second, plus a throttled nudge after each commit) claims
due rows pending -> queued and publishes their ids; `send_owed` claims each row queued ->
sending before building and sending it, so a duplicated or redelivered task finds nothing.
"""

import logging
import smtplib
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.mail import mailers
from django.db.models import Case, F, Value, When
from django.utils import timezone

from ownedaudience import outbox

from .models import OwedEmail

log = logging.getLogger(__name__)

CLAIM_SIZE = 500  # rows claimed per dispatch round
TASK_SIZE = 20  # emails per send task: short tasks, one SMTP connection each
MAX_ROUNDS = 20  # a backlog drains over several beats rather than in one long task
QUEUED_LEASE = timedelta(minutes=10)  # published but never picked up: the broker lost it
SENDING_LEASE = timedelta(minutes=10)  # claimed by a worker that then died mid-send
MAX_ATTEMPTS = 8

Status = OwedEmail.Status


def retry_delay(attempts):
    """The bulk engine's backoff, from the same settings: 30 s, 1 min, 2 min, … capped at an hour."""
    base = settings.SEND_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(base, settings.SEND_RETRY_MAX_SECONDS))


def recover_stale(now=None):
    """Queued rows the broker lost go back to pending; rows a dead worker held become unknown."""
    now = now or timezone.now()
    requeued = OwedEmail.objects.filter(status=Status.QUEUED, queued_at__lt=now - QUEUED_LEASE).update(
        status=Status.PENDING, claim=""
    )
    # Resending could deliver twice, so the creator sees these instead (the fan can sign up again).
    lost = OwedEmail.objects.filter(status=Status.SENDING, sending_at__lt=now - SENDING_LEASE).update(
        status=Status.UNKNOWN, error="The worker stopped while sending; not resent automatically."
    )
    return requeued, lost


def claim_due(limit=CLAIM_SIZE, now=None):
    """Mark up to `limit` due pending rows queued; returns their ids. Safe with several dispatchers."""
    now = now or timezone.now()
    due = OwedEmail.objects.filter(status=Status.PENDING, due_at__lte=now).order_by("due_at", "id")
    return outbox.claim_due(due, limit=limit, now=now)


def dispatch_due():
    """Publish every due owed email to the transactional queue. Returns how many were handed over."""
    from .tasks import send_owed_emails

    recover_stale()
    return outbox.dispatch(claim_due, send_owed_emails, OwedEmail, claim_size=CLAIM_SIZE, task_size=TASK_SIZE,
                           rounds=MAX_ROUNDS, what="owed emails")


_is_transient_smtp = (
    smtplib.SMTPServerDisconnected,
    smtplib.SMTPConnectError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def _is_transient(error):
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code < 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code < 500
    return isinstance(error, _is_transient_smtp)


def send_owed(ids):
    """Send the owed emails `ids` that are still queued; they are claimed first, so none goes twice.

    One claim and one "sent" update per task rather than per email: each write is a commit
    (a WAL flush), and signups waiting on the same disk feel every one of them. A row left in
    `sending` (worker killed between the send and the update) is never resent on its own.
    """
    from .emails import build_owed_email

    claim = uuid.uuid4().hex
    now = timezone.now()
    OwedEmail.objects.filter(id__in=ids, status=Status.QUEUED).update(
        status=Status.SENDING, sending_at=now, attempts=F("attempts") + 1, claim=claim
    )
    claimed = list(
        OwedEmail.objects.filter(id__in=ids, claim=claim, status=Status.SENDING)
        .select_related("subscription__newsletter", "subscription__subscriber")
        .order_by("id")
    )
    if not claimed:
        return 0  # a duplicated or redelivered task: someone else has them
    sent, skipped = {}, []
    connection_ = mailers["transactional"]
    try:
        for owed in claimed:
            message = build_owed_email(owed)
            if message is None:
                skipped.append(owed.id)
                continue
            try:
                connection_.send_messages([message])
            except Exception as error:
                _record_failure(owed, error)
                connection_.close()  # a broken SMTP session must not poison the next message
                if getattr(error, "outcome", None) == "throttled":
                    break  # the relay says slow down: the rest of the task goes back, costing nothing
                continue
            sent[owed.id] = getattr(message, "provider_id", "") or str(message.extra_headers.get("Message-ID", ""))
    finally:
        connection_.close()
        finished = timezone.now()
        if sent:
            OwedEmail.objects.filter(id__in=list(sent), status=Status.SENDING).update(
                status=Status.SENT, sent_at=finished, error="",
                message_id=Case(*[When(id=i, then=Value(mid[:300])) for i, mid in sent.items()], default=Value("")),
            )
        untouched = [owed.id for owed in claimed if owed.id not in sent and owed.id not in skipped]
        if untouched:  # after a throttled answer: back to pending as they were, the attempt given back
            OwedEmail.objects.filter(id__in=untouched, status=Status.SENDING).update(
                status=Status.PENDING, claim="", attempts=F("attempts") - 1,
                due_at=finished + timedelta(seconds=settings.SEND_PAUSE_BASE_SECONDS),
            )
        if skipped:
            OwedEmail.objects.filter(id__in=skipped, status=Status.SENDING).update(
                status=Status.SKIPPED, sent_at=finished
            )
    return len(sent)


def _record_failure(owed, error):
    """What the relay or SES said decides, read as the bulk engine reads it (`error.outcome`
    from the transports' mail backend): unknown is never sent again, throttled costs no attempt."""
    reason = f"{type(error).__name__}: {error}"[:2000]
    mine = OwedEmail.objects.filter(id=owed.id, status=Status.SENDING)
    outcome = getattr(error, "outcome", None)
    if outcome == "unknown":
        log.error("owed email %s may have gone out: %s", owed.id, reason)
        mine.update(status=Status.UNKNOWN, error=f"The connection broke after the message was handed over "
                                                 f"(not resent automatically): {reason}"[:2000])
        return
    if outcome == "throttled":
        log.warning("owed email %s deferred, the relay is throttling: %s", owed.id, reason)
        mine.update(status=Status.PENDING, claim="", attempts=F("attempts") - 1, error=reason,
                    due_at=timezone.now() + timedelta(seconds=settings.SEND_PAUSE_BASE_SECONDS))
        return
    transient = outcome == "retry" if outcome else _is_transient(error)
    if transient and owed.attempts < MAX_ATTEMPTS:
        log.warning("owed email %s deferred (attempt %s): %s", owed.id, owed.attempts, reason)
        OwedEmail.objects.filter(id=owed.id, status=Status.SENDING).update(
            status=Status.PENDING, claim="", due_at=timezone.now() + retry_delay(owed.attempts), error=reason
        )
    else:
        log.error("owed email %s failed: %s", owed.id, reason)
        OwedEmail.objects.filter(id=owed.id, status=Status.SENDING).update(status=Status.FAILED, error=reason)
