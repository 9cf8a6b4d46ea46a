"""The send engine: snapshot, claim, hand over, record. The database is the source of truth.

Invariants (ARCHITECTURE.md has the whole list):
- start_send() freezes the audience in one INSERT ... SELECT; (issue, subscriber) is unique.
- A worker claims rows with a conditional update and a lease; only rows it moved from
  claimed to sending under its own claim token are handed to the transport.
- Transient errors put rows back to pending with a growing delay; permanent ones fail them;
  a lease that runs out turns claimed rows back to pending and sending rows to unknown.
- Markdown is rendered once per issue and audience, into Rendition rows; workers only
  personalize the prepared bytes.
"""

import logging
import random
import time
import uuid
from collections import OrderedDict, defaultdict
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, F, Min, Q
from django.db.models.functions import Lower
from django.utils import timezone

from subscribers.models import Subscriber, Subscription, Suppression

from . import ratelimit, rendering
from .mime import PreparedMessage, Recipient, format_datetime_now, shared_headers
from .models import Delivery, Issue, Rendition
from .transports import FAILED, RETRY, SENT, UNKNOWN, get_transport

log = logging.getLogger(__name__)
S = Delivery.Status
IN_PROGRESS = (S.PENDING, S.CLAIMED, S.SENDING)
WEB = "web"


class IssueNotReady(Exception):
    """The issue cannot be sent as it is; `problems` says why, in words for the creator."""

    def __init__(self, problems):
        super().__init__(" ".join(problems))
        self.problems = problems


class SendFailed(Exception):
    pass


# ---------------------------------------------------------------- starting a send


def audience_variants(issue):
    return ["paid"] if issue.audience == Issue.Audience.PAID else ["free", "paid"]


def render_renditions(issue):
    """Render the issue once per audience and store the result for every worker to use."""
    headers = shared_headers(issue)
    for variant in audience_variants(issue):
        html, text = rendering.render_issue(issue, variant)
        Rendition.objects.update_or_create(
            issue=issue, variant=variant, defaults={"headers": headers, "html": html, "text": text}
        )
    # The web version, frozen with the emails: what the archive shows is what was sent.
    Rendition.objects.update_or_create(
        issue=issue, variant=WEB, defaults={"headers": "", "html": rendering.render_web_body(issue), "text": ""}
    )


def snapshot(issue):
    """One Delivery per recipient, in one set-based statement; returns how many were written."""
    d, s, p, x = (m._meta.db_table for m in (Delivery, Subscription, Subscriber, Suppression))
    paid_only = "AND s.tier = 'paid'" if issue.audience == Issue.Audience.PAID else ""
    sql = f"""
        INSERT INTO {d} (issue_id, subscriber_id, variant, status, attempts, claimed_by, message_id, error)
        SELECT %s, s.subscriber_id, s.tier, 'pending', 0, '', '', ''
        FROM {s} s JOIN {p} p ON p.id = s.subscriber_id
        WHERE s.newsletter_id = %s AND s.status = 'active' {paid_only}
          AND NOT EXISTS (SELECT 1 FROM {x} x WHERE lower(x.email) = lower(p.email))
        ON CONFLICT DO NOTHING
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [issue.pk, issue.newsletter_id])
        return cursor.rowcount


def start_send(issue_id):
    """Freeze the audience and start sending. Safe to call twice: the second call does nothing.

    Returns the number of recipients. Raises IssueNotReady with the problems to fix.
    """
    with transaction.atomic():
        issue = Issue.objects.select_for_update().select_related("newsletter").get(pk=issue_id)
        if issue.status in (Issue.Status.SENDING, Issue.Status.SENT, Issue.Status.FAILED):
            return issue.deliveries.count()
        problems = rendering.issue_problems(issue)
        if problems:
            raise IssueNotReady(problems)
        render_renditions(issue)
        count = snapshot(issue)
        issue.status = Issue.Status.SENDING
        issue.send_started_at = timezone.now()
        issue.save(update_fields=["status", "send_started_at", "updated_at"])
    log.info("issue %s: sending to %s recipients", issue_id, count)
    transaction.on_commit(lambda: kick(issue_id, settings.SEND_CHAINS))
    return count


def schedule_send(issue_id, when):
    """Have beat start the send at `when`; checks now what would stop it then."""
    with transaction.atomic():
        issue = Issue.objects.select_for_update().select_related("newsletter").get(pk=issue_id)
        if issue.status not in (Issue.Status.DRAFT, Issue.Status.SCHEDULED):
            raise IssueNotReady([f"The issue is already {issue.get_status_display().lower()}."])
        problems = rendering.issue_problems(issue)
        if problems:
            raise IssueNotReady(problems)
        issue.status, issue.scheduled_at = Issue.Status.SCHEDULED, when
        issue.save(update_fields=["status", "scheduled_at", "updated_at"])


def start_due_scheduled(now=None):
    """Start every scheduled issue whose time has come; returns their ids."""
    now = now or timezone.now()
    started = []
    for issue_id in Issue.objects.filter(status=Issue.Status.SCHEDULED, scheduled_at__lte=now).values_list(
        "id", flat=True
    ):
        try:
            start_send(issue_id)
            started.append(issue_id)
        except IssueNotReady as error:
            log.error("scheduled issue %s could not start: %s", issue_id, error)
            Issue.objects.filter(pk=issue_id, status=Issue.Status.SCHEDULED).update(status=Issue.Status.FAILED)
    return started


def kick(issue_id, chains=1):
    """Ask workers to work on an issue; a broker that is down is not fatal (the watchdog asks again)."""
    from .tasks import send_batch

    for _ in range(chains):
        try:
            send_batch.delay(issue_id)
        except Exception as error:  # the broker is unreachable; beat's watchdog will kick again
            log.warning("could not queue a batch of issue %s: %s", issue_id, error)
            return


# ---------------------------------------------------------------- sending a batch


_prepared = OrderedDict()


def prepared(issue_id, variant):
    """The rendition of an issue as prepared bytes, loaded once per worker process."""
    key = (issue_id, variant)
    if key not in _prepared:
        rendition = Rendition.objects.select_related("issue__newsletter").get(issue_id=issue_id, variant=variant)
        _prepared[key] = PreparedMessage.from_rendition(rendition)
        while len(_prepared) > 16:
            _prepared.popitem(last=False)
    return _prepared[key]


def batch_size(transport):
    rate = ratelimit.bucket(transport).rate
    size = settings.SEND_BATCH_SIZE
    if rate:
        size = min(size, max(transport.window, int(rate * settings.SEND_BATCH_SECONDS)))
    return size


def claim(issue_id, worker, size):
    """Claim up to `size` due pending rows; returns (claim token, ids)."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(issue_id=issue_id, status=S.PENDING)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .order_by("id")
            .values_list("id", flat=True)[:size]
        )
        if not ids:
            return None, []
        token = uuid.uuid4()
        Delivery.objects.filter(id__in=ids, status=S.PENDING).update(
            status=S.CLAIMED, claim_token=token, claimed_by=worker[:200],
            lease_until=now + timedelta(seconds=settings.SEND_LEASE_SECONDS), attempts=F("attempts") + 1,
        )
    return token, ids


def recipients(issue, token, ids):
    """The claimed rows with their addresses; rows whose fan left since the snapshot are skipped."""
    # Every lookup of claimed rows goes by id (the primary key): the claim token has no index.
    rows = list(
        Delivery.objects.filter(id__in=ids, claim_token=token, status=S.CLAIMED)
        .order_by("id")
        .values_list("id", "variant", "subscriber_id", "subscriber__email", "subscriber__name")
    )
    subscriber_ids = [row[2] for row in rows]
    active = dict(
        Subscription.objects.filter(
            newsletter_id=issue.newsletter_id, subscriber_id__in=subscriber_ids, status=Subscription.Status.ACTIVE
        ).values_list("subscriber_id", "id")
    )
    suppressed = set(
        Suppression.objects.annotate(address=Lower("email"))
        .filter(address__in=[row[3].lower() for row in rows])
        .values_list("address", flat=True)
    )
    keep, skipped = [], []
    for delivery_id, variant, subscriber_id, email, name in rows:
        if subscriber_id in active and email.lower() not in suppressed:
            keep.append((variant, Recipient(delivery_id, email, name, active[subscriber_id])))
        else:
            skipped.append(delivery_id)
    if skipped:
        Delivery.objects.filter(id__in=skipped, claim_token=token).update(
            status=S.SKIPPED, error="left the list or was suppressed after the send started"
        )
    return keep


def hand_over(token, ids, sent=()):
    """Mark a window as handed to the transport; returns the ids that are still this claim's.

    `sent` holds the previous window's (id, provider id) pairs: on PostgreSQL both writes go in
    one statement, one round trip per window instead of two.
    """
    if sent and connection.vendor == "postgresql":
        return _mark_sent_and_hand_over(token, ids, sent)
    if sent:
        mark_sent(token, sent, timezone.now())
    moved = Delivery.objects.filter(id__in=ids, claim_token=token, status=S.CLAIMED).update(status=S.SENDING)
    if moved == len(ids):
        return set(ids)
    return set(Delivery.objects.filter(id__in=ids, claim_token=token, status=S.SENDING).values_list("id", flat=True))


# The columns a sent row gets; `v` is a VALUES list of (id, provider message id).
SENT_SET = "status = 'sent', message_id = v.mid, sent_at = %s, error = '', lease_until = NULL"


def _sent_values(sent):
    # PostgreSQL types the ids of a bare VALUES list from its first row; say bigint outright.
    row = "(%s::bigint, %s)" if connection.vendor == "postgresql" else "(%s, %s)"
    return ", ".join([row] * len(sent)), [value for pair in sent for value in pair]


def _mark_sent_and_hand_over(token, ids, sent):
    table = Delivery._meta.db_table
    values, params = _sent_values(sent)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH v(id, mid) AS (VALUES {values}),
                done AS (
                    UPDATE {table} d SET {SENT_SET}
                    FROM v WHERE d.id = v.id AND d.claim_token = %s AND d.status IN ('sending', 'unknown')
                    RETURNING d.id)
                UPDATE {table} SET status = 'sending'
                WHERE id = ANY(%s) AND claim_token = %s AND status = 'claimed'
                RETURNING id""",
            [*params, timezone.now(), token, list(ids), token],
        )
        return {row[0] for row in cursor.fetchall()}


def retry_delay(attempts):
    base = settings.SEND_RETRY_BASE_SECONDS * (2 ** max(0, attempts - 1))
    return min(settings.SEND_RETRY_MAX_SECONDS, base) * random.uniform(0.8, 1.2)


def record(token, results, attempts_by_id, *, defer_sent=False):
    """Write what the transport said, only on rows still under this claim.

    With defer_sent the sent rows are returned instead, for the next hand_over to write.
    """
    now = timezone.now()
    sent = [(r.delivery_id, r.provider_id[:300]) for r in results if r.outcome == SENT]
    if sent and not defer_sent:
        mark_sent(token, sent, now)
    by_outcome = defaultdict(list)
    for result in results:
        if result.outcome == SENT:
            continue
        outcome = result.outcome
        if outcome == RETRY and attempts_by_id.get(result.delivery_id, 0) >= settings.SEND_MAX_ATTEMPTS:
            outcome = FAILED
        by_outcome[(outcome, result.error[:2000])].append(result.delivery_id)
    mine = Q(claim_token=token, status__in=[S.SENDING, S.UNKNOWN])
    for (outcome, error), ids in by_outcome.items():
        rows = Delivery.objects.filter(mine, id__in=ids)
        if outcome == RETRY:
            attempts = max(attempts_by_id.get(i, 1) for i in ids)
            rows.update(status=S.PENDING, error=error, claim_token=None, lease_until=None,
                        next_attempt_at=now + timedelta(seconds=retry_delay(attempts)))
        elif outcome == FAILED:
            rows.update(status=S.FAILED, error=error, lease_until=None)
        elif outcome == UNKNOWN:
            rows.update(status=S.UNKNOWN, error=error, lease_until=None)
    return sent if defer_sent else []


def mark_sent(token, sent, now):
    """Many rows to sent, each with its own provider id, in one statement."""
    table = Delivery._meta.db_table
    values, params = _sent_values(sent)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH v(id, mid) AS (VALUES {values})
                UPDATE {table} SET {SENT_SET}
                FROM v
                WHERE {table}.id = v.id AND {table}.claim_token = %s AND {table}.status IN ('sending', 'unknown')""",
            [*params, now, token.hex if connection.vendor == "sqlite" else token],
        )


def release(token, ids):
    """Give back rows claimed but never handed over (the batch stopped early)."""
    return Delivery.objects.filter(id__in=ids, claim_token=token, status=S.CLAIMED).update(
        status=S.PENDING, claim_token=None, lease_until=None, attempts=F("attempts") - 1
    )


def send_next_batch(issue_id, worker="worker"):
    """Claim one batch of an issue and send it. Returns what to do next:
    ("again", 0) another batch is due now, ("later", seconds) retries wait, ("done", 0) nothing left.
    """
    issue = Issue.objects.select_related("newsletter").get(pk=issue_id)
    if issue.status != Issue.Status.SENDING:
        return "done", 0
    transport = get_transport()
    token, ids = claim(issue_id, worker, batch_size(transport))
    if not ids:
        return next_step(issue_id)
    try:
        attempts = dict(Delivery.objects.filter(id__in=ids).values_list("id", "attempts"))
        batch = recipients(issue, token, ids)
        date = format_datetime_now()
        sent = []  # the last window's sent rows, written together with the next hand-over
        for start in range(0, len(batch), transport.window):
            window = batch[start:start + transport.window]
            wait = ratelimit.reserve(transport, len(window))
            if wait > 0:
                if sent:  # written now, not left as "sending" while we wait
                    mark_sent(token, sent, timezone.now())
                    sent = []
                time.sleep(wait)
            mine = hand_over(token, [recipient.delivery_id for _, recipient in window], sent)
            outgoing = [prepared(issue_id, variant).build(recipient, date) for variant, recipient in window
                        if recipient.delivery_id in mine]
            sent = record(token, transport.send(outgoing), attempts, defer_sent=True)
        if sent:
            mark_sent(token, sent, timezone.now())
    finally:
        release(token, ids)
    return "again", 0


def next_step(issue_id):
    """With nothing due now: wait for the earliest retry, or finish the issue."""
    pending = Delivery.objects.filter(issue_id=issue_id, status=S.PENDING)
    if pending.filter(next_attempt_at__isnull=True).exists():
        return "again", 0  # due rows another worker was locking a moment ago
    earliest = pending.aggregate(earliest=Min("next_attempt_at"))["earliest"]
    if earliest is not None:
        return "later", max(0.0, (earliest - timezone.now()).total_seconds())
    if Delivery.objects.filter(issue_id=issue_id, status__in=[S.CLAIMED, S.SENDING]).exists():
        return "done", 0  # another worker holds the rest; the watchdog looks again
    finish(issue_id)
    return "done", 0


def finish(issue_id):
    """Close a send once nothing is pending or in a worker's hands."""
    if Delivery.objects.filter(issue_id=issue_id, status__in=IN_PROGRESS).exists():
        return False
    counts = progress(issue_id)
    total = sum(counts.values())
    status = Issue.Status.FAILED if total and counts.get(S.FAILED, 0) == total else Issue.Status.SENT
    return bool(
        Issue.objects.filter(pk=issue_id, status=Issue.Status.SENDING).update(status=status, sent_at=timezone.now())
    )


# ---------------------------------------------------------------- watching over sends


def _chain_key(issue_id):
    return f"ownedaudience:send-chain:{issue_id}"


def heartbeat_seconds():
    return 2 * settings.SEND_BATCH_SECONDS + 2 * settings.SEND_WATCHDOG_SECONDS


def chain_alive(issue_id, seconds=None):
    """A chain of batches reports in; the watchdog leaves the issue alone while one does."""
    try:
        cache.set(_chain_key(issue_id), 1, timeout=seconds or heartbeat_seconds())
    except Exception as error:  # the cache is down: the watchdog may add a chain, which is harmless
        log.warning("could not record a heartbeat for issue %s: %s", issue_id, error)


def chain_seen(issue_id):
    try:
        return cache.get(_chain_key(issue_id)) is not None
    except Exception:
        return False


def recover_expired_leases(issue_id, now=None):
    """Rows whose worker vanished: claimed ones go back to pending, sending ones become unknown."""
    now = now or timezone.now()
    expired = Delivery.objects.filter(issue_id=issue_id, lease_until__lt=now)
    back = expired.filter(status=S.CLAIMED).update(
        status=S.PENDING, claim_token=None, lease_until=None, attempts=F("attempts") - 1
    )
    lost = expired.filter(status=S.SENDING).update(
        status=S.UNKNOWN, lease_until=None,
        error="the worker stopped while this message was being handed over; it may or may not have gone out",
    )
    if back or lost:
        log.warning("issue %s, expired leases: %s rows back to pending, %s unknown", issue_id, back, lost)
    return back, lost


def watchdog():
    """Beat's regular look at every send: recover leases, finish what is done, and restart the
    chains of batches when none has reported in (their tasks were lost with a worker or a broker)."""
    for issue_id in Issue.objects.filter(status=Issue.Status.SENDING).values_list("id", flat=True):
        recover_expired_leases(issue_id)
        due = Delivery.objects.filter(issue_id=issue_id, status=S.PENDING).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now())
        )
        if due.exists():
            if not chain_seen(issue_id):
                chain_alive(issue_id)
                kick(issue_id, settings.SEND_CHAINS)
        else:
            finish(issue_id)


# ---------------------------------------------------------------- what the creator sees and does


def progress(issue_id):
    """Deliveries of an issue counted by status."""
    return {
        row["status"]: row["n"]
        for row in Delivery.objects.filter(issue_id=issue_id).values("status").annotate(n=Count("id"))
    }


def reopen(issue_id):
    Issue.objects.filter(pk=issue_id, status__in=[Issue.Status.SENT, Issue.Status.FAILED]).update(
        status=Issue.Status.SENDING, sent_at=None
    )


def retry_failed(issue_id):
    """Send the failed rows again; returns how many."""
    with transaction.atomic():
        count = Delivery.objects.filter(issue_id=issue_id, status=S.FAILED).update(
            status=S.PENDING, attempts=0, error="", next_attempt_at=None, claim_token=None
        )
        if count:
            reopen(issue_id)
    if count:
        transaction.on_commit(lambda: kick(issue_id, settings.SEND_CHAINS))
    return count


def resolve_unknown(issue_id, *, resend):
    """The creator's call on rows whose fate is unknown: send them again, or count them as sent."""
    with transaction.atomic():
        rows = Delivery.objects.filter(issue_id=issue_id, status=S.UNKNOWN)
        if resend:
            count = rows.update(status=S.PENDING, attempts=0, next_attempt_at=None, claim_token=None,
                                error="sent again at the creator's request")
            if count:
                reopen(issue_id)
        else:
            count = rows.update(status=S.SENT, error="counted as sent by the creator")
    if resend and count:
        transaction.on_commit(lambda: kick(issue_id, settings.SEND_CHAINS))
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
