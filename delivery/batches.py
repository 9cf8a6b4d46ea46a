"""Sending a batch: claim rows under a lease, hand them over a group at a time (only what is on
the wire is `sending`), record what the transport said, and close the issue when nothing can
still be sent. The database is the source of truth."""

import logging
import random
import time
import uuid
from collections import OrderedDict, defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import DateTimeField, F, Min, Q, Value
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from newsletters import selectors
from newsletters.models import Issue
from transports import FAILED, HALTED, SENT, THROTTLED, UNKNOWN, Result, get_transport, ratelimit

from . import pausing, signals
from .mime import PreparedMessage, Recipient, format_datetime_now
from .models import Delivery, DeliveryClaim, Rendition
from .progress import progress

log = logging.getLogger(__name__)
S = Delivery.Status
IN_PROGRESS = (S.PENDING, S.CLAIMED, S.SENDING)


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


def lease_end():
    """The end of a lease that starts now, on the database's clock (shared by every host)."""
    return Now() + timedelta(seconds=settings.SEND_LEASE_SECONDS)


def claim(issue_id, worker, size):
    """Claim up to `size` due pending rows under a new lease; returns (claim token, ids)."""
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
        # The rows and their lease appear together: the watchdog never sees one without the other.
        DeliveryClaim.objects.create(token=token, issue_id=issue_id, worker=worker[:200], lease_until=lease_end())
        Delivery.objects.filter(id__in=ids, status=S.PENDING).update(
            status=S.CLAIMED, claim_token=token, claimed_by=worker[:200], attempts=F("attempts") + 1
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
    # Still in the audience (the snapshot's own definition): not gone, not suppressed since.
    active = dict(
        selectors.issue_audience(issue).filter(subscriber_id__in=[row[2] for row in rows])
        .values_list("subscriber_id", "id")
    )
    keep, skipped = [], []
    for delivery_id, variant, subscriber_id, email, name in rows:
        if subscriber_id in active:
            keep.append((variant, Recipient(delivery_id, email, name, active[subscriber_id])))
        else:
            skipped.append(delivery_id)
    if skipped:
        Delivery.objects.filter(id__in=skipped, claim_token=token).update(
            status=S.SKIPPED, error="left the list or was suppressed after the send started"
        )
    return keep


def write(token, *, sent=(), hand_over=(), renew=False):
    """One round trip per group: mark the last group's rows sent (each with its provider id),
    renew the claim's lease, and move the next group to `sending`. Returns the ids of the next
    group that are still this claim's (a lease that ran out gave the others back)."""
    if connection.vendor == "postgresql":
        return _write_postgresql(token, sent, hand_over, renew)
    if sent:
        now = timezone.now()
        for delivery_id, provider_id in sent:
            Delivery.objects.filter(id=delivery_id, claim_token=token, status__in=[S.SENDING, S.UNKNOWN]).update(
                status=S.SENT, message_id=provider_id, sent_at=now, error=""
            )
    if renew:
        DeliveryClaim.objects.filter(token=token).update(lease_until=lease_end())
    if not hand_over:
        return set()
    Delivery.objects.filter(id__in=hand_over, claim_token=token, status=S.CLAIMED).update(status=S.SENDING)
    return set(Delivery.objects.filter(id__in=hand_over, claim_token=token, status=S.SENDING).values_list("id", flat=True))


def _write_postgresql(token, sent, hand_over, renew):
    table, claims = Delivery._meta.db_table, DeliveryClaim._meta.db_table
    parts, params = [], []
    if sent:
        values = ", ".join(["(%s::bigint, %s)"] * len(sent))
        parts.append(
            f"""v(id, mid) AS (VALUES {values}),
            done AS (UPDATE {table} d SET status = %s, message_id = v.mid, sent_at = %s, error = ''
                     FROM v WHERE d.id = v.id AND d.claim_token = %s AND d.status IN (%s, %s))"""
        )
        params += [value for pair in sent for value in pair]
        params += [S.SENT, timezone.now(), token, S.SENDING, S.UNKNOWN]
    if renew:
        parts.append(f"lease AS (UPDATE {claims} SET lease_until = now() + make_interval(secs => %s) WHERE token = %s)")
        params += [settings.SEND_LEASE_SECONDS, token]
    # This statement runs once per message on SMTP: its commit does not wait for the WAL flush
    # (synchronous_commit off, for this statement's own transaction only). A worker that dies
    # loses nothing by it; a PostgreSQL crash may lose the last fraction of a second of these
    # writes, which recover_expired_leases then treats as unknown, never as unsent.
    parts.append("fast AS (SELECT set_config('synchronous_commit', 'off', true))")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH {', '.join(parts)}
                UPDATE {table} SET status = %s
                WHERE id = ANY(%s) AND claim_token = %s AND status = %s AND EXISTS (SELECT 1 FROM fast)
                RETURNING id""",
            [*params, S.SENDING, list(hand_over), token, S.CLAIMED],
        )
        return {row[0] for row in cursor.fetchall()}


def retry_delay(attempts):
    base = settings.SEND_RETRY_BASE_SECONDS * (2 ** max(0, attempts - 1))
    return min(settings.SEND_RETRY_MAX_SECONDS, base) * random.uniform(0.8, 1.2)


def record(issue_id, token, results, attempts_by_id):
    """Write what the transport said about everything but sent rows, on rows still under this
    claim; returns the sent (id, provider id) pairs, for the next write() to carry."""
    sent = [(r.delivery_id, r.provider_id[:300]) for r in results if r.outcome == SENT]
    by_outcome = defaultdict(list)
    for result in results:
        if result.outcome != SENT:
            by_outcome[(result.outcome, result.error[:2000])].append(result.delivery_id)
    for (outcome, error), ids in by_outcome.items():
        rows = Delivery.objects.filter(id__in=ids, claim_token=token, status__in=[S.SENDING, S.UNKNOWN])
        if outcome == FAILED:
            rows.update(status=S.FAILED, error=error)
        elif outcome == UNKNOWN:
            rows.update(status=S.UNKNOWN, error=error)
        elif outcome in (THROTTLED, HALTED):  # not the row's fault: it costs no attempt; a pause gates it
            retry_later(issue_id, token, ids, error, delay=None, charge=False)
        else:
            delay = retry_delay(max(attempts_by_id.get(i, 1) for i in ids))
            retry_later(issue_id, token, ids, error, delay=delay, charge=True)
    return sent


def retry_later(issue_id, token, ids, error, *, delay, charge):
    """Rows back to pending for a later try, unless their time budget is spent (then failed)."""
    now = timezone.now()
    mine = Delivery.objects.filter(id__in=ids, claim_token=token)
    spent = mine.filter(status__in=[S.SENDING, S.UNKNOWN], retry_until__lt=now).update(
        status=S.FAILED, error=f"gave up after {settings.SEND_RETRY_FOR_SECONDS / 3600:g} hours of trying: {error}"
    )
    budget = Value(now + timedelta(seconds=settings.SEND_RETRY_FOR_SECONDS), output_field=DateTimeField())
    changes = {
        "status": S.PENDING, "error": error, "claim_token": None, "retry_until": Coalesce(F("retry_until"), budget),
        "next_attempt_at": now + timedelta(seconds=delay) if delay else None,
    }
    if not charge:
        changes["attempts"] = F("attempts") - 1
    moved = mine.filter(status=S.SENDING).update(**changes)
    if moved + spent < len(ids):
        # Late truth on rows the watchdog had already called unknown, maybe after the issue was
        # closed: under the issue's lock, so finish() cannot close it in between, and reopened.
        with transaction.atomic():
            list(Issue.objects.select_for_update().filter(pk=issue_id).values_list("id", flat=True))
            if mine.filter(status=S.UNKNOWN).update(**changes):
                reopen(issue_id)


def fail_unbuildable(token, results):
    for result in results:
        Delivery.objects.filter(id=result.delivery_id, claim_token=token, status=S.CLAIMED).update(
            status=S.FAILED, error=result.error[:2000]
        )


def release(token, ids):
    """Give back rows claimed but never handed over (the batch stopped early)."""
    return Delivery.objects.filter(id__in=ids, claim_token=token, status=S.CLAIMED).update(
        status=S.PENDING, claim_token=None, attempts=F("attempts") - 1
    )


class Batch:
    """One claim's rows on their way out: a group at a time, `transport.in_flight` messages on
    the wire at once and only those marked `sending`; results are written before anything
    that can wait or fail (the rate bucket, the next claim), and the lease renews as it goes."""

    def __init__(self, issue, token, ids, transport):
        self.issue, self.token, self.ids, self.transport = issue, token, ids, transport
        self.sent = []  # the last group's sent rows, carried by the next write
        self.renewed = self.looked = time.monotonic()

    def _renew_due(self):
        return time.monotonic() - self.renewed > settings.SEND_LEASE_SECONDS / 4

    def _write(self, hand_over=()):
        renew = self._renew_due()
        mine = write(self.token, sent=self.sent, hand_over=hand_over, renew=renew)
        self.sent = []
        if renew:
            self.renewed = time.monotonic()
        return mine

    def _stopped(self):
        """Whether the send was paused meanwhile; asked at most once a second."""
        now = time.monotonic()
        if now - self.looked < 1:
            return False
        self.looked = now
        return not Issue.objects.filter(pk=self.issue.pk, status=Issue.Status.SENDING).exists()

    def flush(self):
        if self.sent or self._renew_due():
            self._write()

    def run(self):
        issue, transport = self.issue, self.transport
        attempts = dict(Delivery.objects.filter(id__in=self.ids).values_list("id", "attempts"))
        batch = recipients(issue, self.token, self.ids)
        date = format_datetime_now()
        group = max(1, transport.in_flight)
        window = max(transport.window, group)
        for start in range(0, len(batch), window):
            self.flush()
            if self._stopped():
                return "done", 0  # paused by a person, a guard or another worker: the rest stay pending
            try:
                wait = ratelimit.reserve(transport, len(batch[start:start + window]))
            except ratelimit.RateUnavailable as error:
                log.warning("issue %s: the rate bucket does not answer (%s); rows given back", issue.pk, error)
                return "later", settings.SEND_PAUSE_BASE_SECONDS
            if wait > settings.SEND_LEASE_SECONDS / 2:
                return "later", wait  # a pause: give the rows back rather than sit on them
            if wait > 0:
                time.sleep(wait)
            end = min(start + window, len(batch))
            for first in range(start, end, group):
                outgoing, broken = build(issue.pk, batch[first:min(first + group, end)], date)
                if broken:
                    fail_unbuildable(self.token, broken)
                mine = self._write([message.delivery_id for message in outgoing])
                results = transport.send([message for message in outgoing if message.delivery_id in mine])
                self.sent = record(issue.pk, self.token, results, attempts)
                halted = [result for result in results if result.outcome == HALTED]
                if halted:
                    self.flush()
                    pausing.pause(issue.pk, halted[0].error)
                    return "done", 0
                if any(result.outcome == THROTTLED for result in results):
                    self.flush()
                    seconds = ratelimit.pause(transport)
                    log.warning("issue %s: the transport is throttling; every send pauses %.1f s", issue.pk, seconds)
                    return "later", seconds
        return "again", 0

    def close(self):
        """Write what is left, give back what was never handed over, and drop the lease."""
        self.flush()
        release(self.token, self.ids)
        DeliveryClaim.objects.filter(token=self.token).delete()


def build(issue_id, recipients, date):
    """The group's messages; an address or name that cannot be put in a message fails that row only."""
    outgoing, broken = [], []
    for variant, recipient in recipients:
        message = prepared(issue_id, variant)
        try:
            outgoing.append(message.build(recipient, date))
        except (ValueError, UnicodeError) as error:
            broken.append(Result(recipient.delivery_id, FAILED, error=f"the message could not be built: {error}"))
    return outgoing, broken


def send_next_batch(issue_id, worker="worker"):
    """Claim one batch of an issue and send it. Returns what to do next:
    ("again", 0) another batch is due now, ("later", seconds) retries or a pause wait, ("done", 0) nothing left.
    """
    issue = Issue.objects.select_related("newsletter").get(pk=issue_id)
    if issue.status != Issue.Status.SENDING:
        return "done", 0
    transport = get_transport()
    try:
        paused = ratelimit.paused_for(transport)
    except ratelimit.RateUnavailable:
        return "later", settings.SEND_PAUSE_BASE_SECONDS
    if paused > 0:
        return "later", paused
    token, ids = claim(issue_id, worker, batch_size(transport))
    if not ids:
        return next_step(issue_id)
    batch = Batch(issue, token, ids, transport)
    try:
        return batch.run()
    finally:
        batch.close()


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
    """Close a send once no row can still be sent: none pending (due or not), claimed or sending.

    The issue's row is locked first and the rows are counted after, so a late result that
    turns a row back to pending (retry_later) either lands before the count or reopens the issue.
    """
    with transaction.atomic():
        if not Issue.objects.select_for_update().filter(pk=issue_id, status=Issue.Status.SENDING).exists():
            return False
        if Delivery.objects.filter(issue_id=issue_id, status__in=IN_PROGRESS).exists():
            return False
        counts = progress(issue_id)
        total = sum(counts.values())
        status = Issue.Status.FAILED if total and counts.get(S.FAILED, 0) == total else Issue.Status.SENT
        closed = bool(Issue.objects.filter(pk=issue_id).update(status=status, sent_at=timezone.now()))
        if closed:
            signals.issue_finished.send(Issue, issue_id=issue_id, status=status, counts=counts)
        return closed


def reopen(issue_id):
    Issue.objects.filter(pk=issue_id, status__in=[Issue.Status.SENT, Issue.Status.FAILED]).update(
        status=Issue.Status.SENDING, sent_at=None
    )
