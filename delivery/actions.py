"""What the creator does: retrying failed rows, deciding about unknown ones, a test copy."""

import time

from django.conf import settings
from django.db import transaction

from newsletters import rendering
from newsletters.models import Issue
from transports import SENT, get_transport

from . import chains
from .batches import finish, reopen
from .mime import PreparedMessage, Recipient, shared_headers
from .models import Delivery
from .progress import progress  # noqa: F401 (the engine's reads, next to its actions)
from .starting import IssueNotReady, SendFailed

S = Delivery.Status


def retry_failed(issue_id):
    """Send the failed rows again; returns how many."""
    with transaction.atomic():
        count = Delivery.objects.filter(issue_id=issue_id, status=S.FAILED).update(
            status=S.PENDING, attempts=0, error="", next_attempt_at=None, claim_token=None, retry_until=None
        )
        if count:
            reopen(issue_id)
    if count:
        transaction.on_commit(lambda: chains.kick(issue_id, settings.SEND_CHAINS))
    return count


def resolve_unknown(issue_id, *, resend):
    """The creator's call on rows whose fate is unknown: send them again, or count them as sent."""
    with transaction.atomic():
        rows = Delivery.objects.filter(issue_id=issue_id, status=S.UNKNOWN)
        if resend:
            count = rows.update(status=S.PENDING, attempts=0, next_attempt_at=None, claim_token=None,
                                retry_until=None, error="sent again at the creator's request")
            if count:
                reopen(issue_id)
        else:
            count = rows.update(status=S.SENT, error="counted as sent by the creator")
    if resend and count:
        transaction.on_commit(lambda: chains.kick(issue_id, settings.SEND_CHAINS))
    if not resend:
        finish(issue_id)
    return count


def send_test(issue_id, to):
    """One copy of the issue to `to`, now, through the configured transport; raises on failure."""
    issue = Issue.objects.select_related("newsletter").get(pk=issue_id)
    problems = rendering.issue_problems(issue)
    if problems:
        raise IssueNotReady(problems)
    html, text = rendering.render_issue(issue, "paid")
    issue.title = f"[Test] {issue.title}"
    message = PreparedMessage(issue=issue, headers=shared_headers(issue), html_body=html, text_body=text)
    outgoing = message.build(Recipient(int(time.time() * 1000), to, "", 0))
    [result] = get_transport().send([outgoing])
    if result.outcome != SENT:
        raise SendFailed(f"The test copy to {to} was not accepted: {result.error}")
    return result.provider_id
