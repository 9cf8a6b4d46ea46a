"""The transactional-outbox mechanics shared by owed emails and outgoing webhooks.

Rows are written with the change they report; a dispatcher (beat, plus a nudge after commit)
claims due rows `pending → queued` with SELECT … FOR UPDATE SKIP LOCKED and publishes their ids
in small tasks. A row that could not be published goes straight back to `pending`.
Both models have `status` ("pending", "queued"), `claim` and `queued_at`.
"""

import logging
import uuid

from django.db import connection, transaction

log = logging.getLogger(__name__)


def claim_due(due, *, limit, now):
    """Mark up to `limit` rows of `due` (a queryset of due pending rows, ordered) queued; their ids."""
    model, claim = due.model, uuid.uuid4().hex
    with transaction.atomic():
        ids = list(
            due.select_for_update(skip_locked=connection.features.has_select_for_update_skip_locked)
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return []
        model.objects.filter(id__in=ids, status="pending").update(status="queued", claim=claim, queued_at=now)
    # By primary key: the rows this call claimed (another dispatcher may have taken some).
    return list(model.objects.filter(id__in=ids, claim=claim).order_by("id").values_list("id", flat=True))


def dispatch(claim, task, model, *, claim_size, task_size, rounds, what):
    """Claim and publish rounds of due rows as `task`s of `task_size` ids; returns how many were handed over."""
    handed = 0
    for _round in range(rounds):
        ids = claim()
        for start in range(0, len(ids), task_size):
            chunk = ids[start:start + task_size]
            try:
                task.apply_async(args=[chunk], retry=False)
            except Exception:
                # Not handed over: back for the next round rather than wait for the lease.
                model.objects.filter(id__in=ids[start:], status="queued").update(status="pending", claim="")
                log.exception("could not publish %s; %d left pending", what, len(ids) - start)
                return handed
            handed += len(chunk)
        if len(ids) < claim_size:
            break
    return handed
