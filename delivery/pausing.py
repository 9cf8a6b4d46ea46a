"""A send that stops itself and waits for a person: the transport refused the account (a wrong
password, an unverified sender, a paused SES account) or, after a first sample, too many of the
issue's messages bounced or were marked as spam.

Pausing changes only the issue: its rows stay as they are (the ones in flight are written by
their batch, the rest stay pending), so resuming sends each remaining row once and nothing twice.
"""

import logging

from django.conf import settings
from django.db import transaction

from newsletters.models import Issue

from . import chains, signals

log = logging.getLogger(__name__)


def pause(issue_id, reason, *, notify=True):
    """Stop a send that is going out; True when this call paused it (once, however many workers ask)."""
    reason = (reason or "")[:2000]
    with transaction.atomic():
        paused = Issue.objects.filter(pk=issue_id, status=Issue.Status.SENDING).update(
            status=Issue.Status.PAUSED, paused_reason=reason
        )
        if paused:
            log.warning("issue %s paused: %s", issue_id, reason)
        if paused and notify:
            transaction.on_commit(lambda: _tell_owners(issue_id))
    if paused:
        signals.issue_paused.send(Issue, issue_id=issue_id, reason=reason)
    return bool(paused)


def resume(issue_id):
    """Go on with a paused send from where it stopped; True when it was paused."""
    with transaction.atomic():
        resumed = Issue.objects.filter(pk=issue_id, status=Issue.Status.PAUSED).update(
            status=Issue.Status.SENDING, paused_reason=""
        )
    if resumed:
        chains.chain_alive(issue_id)
        chains.kick(issue_id, settings.SEND_CHAINS)
    return bool(resumed)


def _tell_owners(issue_id):
    from .tasks import tell_owners_paused

    try:
        tell_owners_paused.delay(issue_id)
    except Exception as error:  # the broker is down: the admin still shows the pause and its reason
        log.warning("could not queue the pause notice of issue %s: %s", issue_id, error)
