"""Watching over sends (beat, every SEND_WATCHDOG_SECONDS): leases that ran out, claims whose
worker died or predate a database restart, chains that stopped, sends that are done."""

import logging

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from newsletters.models import Issue

from . import chains
from .batches import finish
from .models import Delivery, DeliveryClaim

log = logging.getLogger(__name__)
S = Delivery.Status


def _server_started_at():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_postmaster_start_time()")
        return cursor.fetchone()[0]


def recover_expired_leases(issue_id):
    """Rows whose worker vanished (its lease ran out, or its claim is gone): claimed ones go back
    to pending, sending ones, which were on the wire, become unknown."""
    with transaction.atomic():
        expired = list(
            DeliveryClaim.objects.select_for_update(skip_locked=True)
            .filter(issue_id=issue_id, lease_until__lt=Now())
            .values_list("token", flat=True)
        )
        live = DeliveryClaim.objects.filter(issue_id=issue_id).exclude(token__in=expired).values("token")
        orphaned = Delivery.objects.filter(issue_id=issue_id, status__in=[S.CLAIMED, S.SENDING]).exclude(
            claim_token__in=live
        )
        if connection.vendor == "postgresql":
            # Claims older than the database server's last start may have lost their last
            # hand-overs with the crash: their claimed rows may have gone out, so they are unknown.
            restarted = _server_started_at()
            doubtful = DeliveryClaim.objects.filter(token__in=expired, created_at__lt=restarted).values("token")
            orphaned.filter(status=S.CLAIMED, claim_token__in=doubtful).update(
                status=S.UNKNOWN, error="the database restarted while this batch was being sent; it may have gone out"
            )
        back = orphaned.filter(status=S.CLAIMED).update(status=S.PENDING, claim_token=None, attempts=F("attempts") - 1)
        lost = orphaned.filter(status=S.SENDING).update(
            status=S.UNKNOWN,
            error="the worker stopped while this message was being handed over; it may or may not have gone out",
        )
        DeliveryClaim.objects.filter(token__in=expired).delete()
    if back or lost:
        log.warning("issue %s, expired leases: %s rows back to pending, %s unknown", issue_id, back, lost)
    return back, lost


def watchdog():
    """Beat's regular look at every send: recover leases, finish what is done, and restart the
    chains of batches when none has reported in (their tasks were lost with a worker or a broker)."""
    for issue_id in Issue.objects.filter(status=Issue.Status.PAUSED).values_list("id", flat=True):
        recover_expired_leases(issue_id)  # a worker lost while a send is paused still leaves its rows
    for issue_id in Issue.objects.filter(status=Issue.Status.SENDING).values_list("id", flat=True):
        back, _ = recover_expired_leases(issue_id)
        due = Delivery.objects.filter(issue_id=issue_id, status=S.PENDING).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now())
        )
        if due.exists():
            if back or not chains.chain_seen(issue_id):
                chains.chain_alive(issue_id)
                chains.kick(issue_id, settings.SEND_CHAINS)
        else:
            finish(issue_id)
