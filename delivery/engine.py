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
from django.db.models import Count, DateTimeField, F, Min, Q, Value
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from newsletters import rendering, selectors
from newsletters.models import Issue

from . import ratelimit
from .mime import PreparedMessage, Recipient, format_datetime_now, shared_headers
from .models import Delivery, DeliveryClaim, Rendition
from .transports import FAILED, SENT, THROTTLED, UNKNOWN, Result, get_transport

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
    """One Delivery per recipient, in one set-based statement; returns how many were written.

    The recipients are the audience selector's rows (subscribers.selectors.audience), compiled
    into the INSERT ... SELECT, so the snapshot and every count of the audience agree."""
    audience = selectors.issue_audience(issue).order_by().values("subscriber_id", "tier")
    select, params = audience.query.sql_with_params()
    sql = f"""
        INSERT INTO {Delivery._meta.db_table}
            (issue_id, subscriber_id, variant, status, attempts, claimed_by, message_id, error)
        SELECT %s, a.subscriber_id, a.tier, %s, 0, '', '', '' FROM ({select}) a
        ON CONFLICT DO NOTHING
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [issue.pk, S.PENDING, *params])
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
        elif outcome == THROTTLED:  # not the row's fault: it costs no attempt, and the pause gates it
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
        self.renewed = time.monotonic()

    def _renew_due(self):
        return time.monotonic() - self.renewed > settings.SEND_LEASE_SECONDS / 4

    def _write(self, hand_over=()):
        renew = self._renew_due()
        mine = write(self.token, sent=self.sent, hand_over=hand_over, renew=renew)
        self.sent = []
        if renew:
            self.renewed = time.monotonic()
        return mine

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
        return bool(Issue.objects.filter(pk=issue_id).update(status=status, sent_at=timezone.now()))


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
    for issue_id in Issue.objects.filter(status=Issue.Status.SENDING).values_list("id", flat=True):
        back, _ = recover_expired_leases(issue_id)
        due = Delivery.objects.filter(issue_id=issue_id, status=S.PENDING).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now())
        )
        if due.exists():
            if back or not chain_seen(issue_id):
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
            status=S.PENDING, attempts=0, error="", next_attempt_at=None, claim_token=None, retry_until=None
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
                                retry_until=None, error="sent again at the creator's request")
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
