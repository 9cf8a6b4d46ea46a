"""The guard on a send's reputation: once a first sample of an issue has gone out, too many hard
bounces (SES reviews an account at 5 %) or complaints (0.1 %; Gmail and Yahoo want under 0.3 %)
pause the send, with the figures, before the rest of the list makes it worse.

Counted per issue from the feedback ledger when a bounce or complaint arrives while the issue is
still going out, at most once every SEND_GUARD_EVERY_SECONDS per issue: the counts take about
0.13 s on a million-row send (BENCHMARKS.md, "The send guard"), too much for every event of a
burst, and a few seconds late is soon enough.
"""

import logging

from django.conf import settings
from django.core.cache import cache

from delivery import engine
from delivery.models import Delivery
from newsletters.models import Issue

from .models import FeedbackEvent

Kind = FeedbackEvent.Kind
log = logging.getLogger(__name__)


def _due(issue_id):
    """Whether this issue's rates may be counted now (once per interval, across every process)."""
    every = settings.SEND_GUARD_EVERY_SECONDS
    if every <= 0:
        return True
    try:
        return cache.add(f"ownedaudience:send-guard:{issue_id}", 1, timeout=every)
    except Exception as error:  # the cache is down: count anyway, rather than let a bad send run on
        log.warning("send guard: the cache does not answer (%s); counting", error)
        return True


def send_health(issue_id):
    """(sent, hard bounces, complaints) of an issue so far, each recipient counted once."""
    sent = Delivery.objects.filter(issue_id=issue_id, status=Delivery.Status.SENT).count()
    events = FeedbackEvent.objects.filter(delivery_id__in=Delivery.objects.filter(issue_id=issue_id).values("id"))
    bounces = events.filter(kind=Kind.BOUNCE, subtype="Permanent").values("delivery_id").distinct().count()
    complaints = events.filter(kind=Kind.COMPLAINT).values("delivery_id").distinct().count()
    return sent, bounces, complaints


def check_send(issue_id):
    """Pause the issue's send when its rates are past the limits; returns the reason, or ""."""
    if not Issue.objects.filter(pk=issue_id, status=Issue.Status.SENDING).exists() or not _due(issue_id):
        return ""
    sent, bounces, complaints = send_health(issue_id)
    if sent < settings.SEND_GUARD_SAMPLE:
        return ""
    reason = ""
    if bounces / sent > settings.SEND_GUARD_BOUNCE_RATE:
        reason = (f"{bounces} of the first {sent} messages bounced for good ({bounces / sent:.1%}), over the "
                  f"{settings.SEND_GUARD_BOUNCE_RATE:.1%} at which Amazon SES reviews an account. An old or "
                  "bought list? Clean it before sending the rest.")
    elif complaints / sent > settings.SEND_GUARD_COMPLAINT_RATE:
        reason = (f"{complaints} of the first {sent} recipients marked it as spam ({complaints / sent:.2%}), over "
                  f"the {settings.SEND_GUARD_COMPLAINT_RATE:.1%} mailbox providers tolerate. Did they all ask "
                  "for this newsletter?")
    if reason and engine.pause(issue_id, reason):
        return reason
    return ""
