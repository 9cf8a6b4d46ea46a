"""The send engine under faults, with real worker processes, Redis, PostgreSQL and an SMTP sink."""

import signal
import subprocess
import time
from collections import Counter
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from delivery import engine
from delivery.models import Delivery
from newsletters.models import Issue
from ownedaudience.env import parse_email_url
from transports import build_transport
from transports.ratelimit import BUCKET_KEY, PAUSE_KEY

from .redis_server import own_redis  # noqa: F401  (fixture)
from .servers import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
S = Delivery.Status

FAST = {"SEND_LEASE_SECONDS": 3, "SEND_WATCHDOG_SECONDS": 0.5, "SEND_BATCH_SECONDS": 1, "SEND_RETRY_BASE_SECONDS": 0.3,
        "SEND_RETRY_MAX_SECONDS": 1, "SEND_SCHEDULE_CHECK_SECONDS": 0.5, "SEND_PAUSE_BASE_SECONDS": 0.2,
        "SEND_PAUSE_MAX_SECONDS": 1}


@pytest.fixture(autouse=True)
def fresh_bucket():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(BUCKET_KEY, PAUSE_KEY)
    for key in client.scan_iter("*send-chain*"):
        client.delete(key)


def wait_until(condition, timeout, message):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.1)


def issue_status(issue):
    return Issue.objects.values_list("status", flat=True).get(pk=issue.pk)


def copies_per_recipient(sink):
    return Counter(address.lower() for message in sink.messages for address in message.rcpt_tos)


def assert_exactly_once(issue, sink, allow_unknown=0):
    copies = copies_per_recipient(sink)
    rows = list(Delivery.objects.filter(issue=issue).values_list("subscriber__email", "status"))
    unknown = [email for email, status in rows if status == S.UNKNOWN]
    assert len(unknown) <= allow_unknown, f"{len(unknown)} unknown rows"
    for email, status in rows:
        if status == S.SENT:
            assert copies[email.lower()] == 1, f"{email}: {copies[email.lower()]} copies"
        else:
            assert status == S.UNKNOWN and copies[email.lower()] <= 1, (email, status)
    assert sum(copies.values()) <= len(rows)
    return unknown


def test_a_worker_killed_mid_send_loses_and_doubles_nothing(ready_issue, smtp_sink, start_worker, monkeypatch):
    """Default lease and watchdog: the dead worker's rows come back within seconds, and only the
    messages that were on its SMTP connections (one each) can be unknown."""
    monkeypatch.setattr(engine.chains, "kick", lambda *a, **k: None)  # the worker's own beat starts the batches
    issue, subscriptions = ready_issue(n=200)
    env = dict(EMAIL_URL=smtp_sink.url, SEND_RATE=50, SEND_BATCH_SIZE=40, SEND_CHAINS=2)
    engine.start_send(issue.pk)
    with start_worker(name="doomed", beat=True, **env) as doomed:
        wait_until(lambda: len(smtp_sink.messages) >= 60, 60, "the send never got going")
        doomed.kill(signal.SIGKILL)
        doomed.process.wait(timeout=10)
        killed_at = time.monotonic()
    in_flight_at_kill = Delivery.objects.filter(issue=issue, status=S.SENDING).count()
    # One worker process with the default pool of SMTP connections: one message on each at most.
    assert in_flight_at_kill <= build_transport(parse_email_url(smtp_sink.url)).in_flight == 8
    with start_worker(name="rescuer", beat=True, **env):
        wait_until(lambda: issue_status(issue) == Issue.Status.SENT, 90, "the send did not complete after restart")
    assert time.monotonic() - killed_at < 60
    unknown = assert_exactly_once(issue, smtp_sink, allow_unknown=in_flight_at_kill)
    assert Delivery.objects.filter(issue=issue, status=S.SENT).count() == 200 - len(unknown)


def test_a_lease_shorter_than_one_slow_window_loses_nothing(ready_issue, smtp_sink, start_worker):
    """Each message takes the relay a second, a window of 24 on 8 connections takes 3 s and the
    lease is 2 s: the lease renews with every hand-over, so nothing is taken from the live worker."""
    issue, _ = ready_issue(n=24)
    smtp_sink.handler.slow_seconds = 1.0
    env = dict(FAST, EMAIL_URL=smtp_sink.url, SEND_LEASE_SECONDS=2, SEND_WINDOW=24, SEND_BATCH_SIZE=24)
    with start_worker(name="slow", beat=True, **env) as worker:
        engine.start_send(issue.pk)
        wait_until(lambda: issue_status(issue) != Issue.Status.SENDING and issue_status(issue) != Issue.Status.DRAFT,
                   60, "the send did not complete")
        time.sleep(1)  # a late answer would land now
    assert issue_status(issue) == Issue.Status.SENT
    assert_exactly_once(issue, smtp_sink)
    assert Delivery.objects.filter(issue=issue, status=S.SENT).count() == 24
    assert "expired leases" not in worker.log()


def test_redis_down_past_the_rate_limiters_patience_costs_nothing(ready_issue, smtp_sink, start_worker, monkeypatch,
                                                                  own_redis):
    """With a rate set, every window asks Redis for tokens. Redis stays away longer than the
    patience: the batch gives its rows back with every result written, and the send resumes."""
    monkeypatch.setattr(engine.chains, "kick", lambda *a, **k: None)
    issue, _ = ready_issue(n=150)
    engine.start_send(issue.pk)
    env = dict(FAST, EMAIL_URL=smtp_sink.url, SEND_RATE=40, SEND_WINDOW=5, SEND_BATCH_SIZE=40,
               SEND_RATE_PATIENCE_SECONDS=1.5)
    with start_worker(name="steady", beat=True, redis_url=own_redis.url, **env):
        wait_until(lambda: len(smtp_sink.messages) >= 40, 60, "the send never got going")
        own_redis.stop()
        time.sleep(6)
        stalled_at = len(smtp_sink.messages)
        own_redis.start()
        wait_until(lambda: issue_status(issue) == Issue.Status.SENT, 120, "the send did not complete")
    assert stalled_at < 150
    assert_exactly_once(issue, smtp_sink)  # no unknown at all: nothing crashed
    assert Delivery.objects.filter(issue=issue, status=S.SENT).count() == 150


def test_half_an_hour_of_throttling_fails_nothing(ready_issue, smtp_sink, start_worker):
    """Time runs 120 times faster here: pauses of 5 s doubling to 5 min become 0.04 s to 2.5 s,
    and 30 minutes of a relay answering 421, then 451, become 15 s. Rows spend no attempt on
    throttling, and the send pauses instead of hammering the relay."""
    scale = 120
    issue, _ = ready_issue(n=60)
    env = dict(FAST, EMAIL_URL=smtp_sink.url, SEND_WINDOW=5, SEND_BATCH_SIZE=20,
               SEND_PAUSE_BASE_SECONDS=5 / scale, SEND_PAUSE_MAX_SECONDS=300 / scale,
               SEND_RETRY_FOR_SECONDS=72 * 3600 / scale)
    smtp_sink.refuse("421 4.7.0 Too busy, come back later")
    with start_worker(name="patient", beat=True, redis_url=f"{settings.REDIS_URL}", **env):
        engine.start_send(issue.pk)
        time.sleep(15 * 60 / scale)
        smtp_sink.refuse("451 4.3.0 Temporary local problem")
        time.sleep(15 * 60 / scale)
        smtp_sink.accept()
        wait_until(lambda: issue_status(issue) == Issue.Status.SENT, 60, "the send did not complete")
    assert_exactly_once(issue, smtp_sink)
    assert Delivery.objects.filter(issue=issue, status=S.SENT).count() == 60
    assert not Delivery.objects.filter(issue=issue, status=S.FAILED).exists()
    assert set(Delivery.objects.filter(issue=issue).values_list("attempts", flat=True)) == {1}
    # Pausing, not hammering: one try (a group, a message on each connection) per pause of
    # 5 s doubling to 5 min is about a dozen in 30 minutes, not one per row per retry.
    group = build_transport(parse_email_url(smtp_sink.url)).in_flight
    assert smtp_sink.handler.refusals / group < 20, smtp_sink.handler.refusals


def test_a_redis_restart_mid_send_loses_and_doubles_nothing(ready_issue, smtp_sink, start_worker, monkeypatch):
    monkeypatch.setattr(engine.chains, "kick", lambda *a, **k: None)
    port = free_port()
    redis_command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    own_redis = subprocess.Popen(redis_command, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: _answers(port), 10, "redis did not start")
        issue, _ = ready_issue(n=150)
        engine.start_send(issue.pk)
        env = dict(FAST, EMAIL_URL=smtp_sink.url, SEND_RATE=40, SEND_WINDOW=5, SEND_BATCH_SIZE=20)
        # The worker's broker and rate bucket are this Redis, not the shared one.
        with start_worker(name="steady", beat=True, redis_url=f"redis://127.0.0.1:{port}/0", **env):
            wait_until(lambda: len(smtp_sink.messages) >= 40, 60, "the send never got going")
            own_redis.terminate()
            own_redis.wait(timeout=10)
            time.sleep(2)
            own_redis = subprocess.Popen(redis_command, stdout=subprocess.DEVNULL)
            wait_until(lambda: issue_status(issue) == Issue.Status.SENT, 120, "the send did not complete")
        assert_exactly_once(issue, smtp_sink)
        assert Delivery.objects.filter(issue=issue, status=S.SENT).count() == 150
    finally:
        own_redis.terminate()
        own_redis.wait(timeout=10)


def _answers(port):
    try:
        return redis.Redis(port=port, socket_connect_timeout=0.2).ping()
    except redis.RedisError:
        return False


def test_an_smtp_server_refusing_for_a_while_gets_everything_afterwards(ready_issue, smtp_sink, start_worker):
    issue, subscriptions = ready_issue(n=60)
    smtp_sink.refuse("421 4.7.0 Too busy, come back later")
    env = dict(FAST, EMAIL_URL=smtp_sink.url, SEND_WINDOW=5, SEND_BATCH_SIZE=20)
    with start_worker(name="patient", beat=True, **env):
        engine.start_send(issue.pk)
        wait_until(lambda: smtp_sink.handler.refusals >= 5, 30, "no attempts were made")
        smtp_sink.refuse("451 4.3.0 Temporary local problem")
        time.sleep(1)
        smtp_sink.accept()
        wait_until(lambda: issue_status(issue) == Issue.Status.SENT, 60, "the send did not complete")
    assert_exactly_once(issue, smtp_sink)
    assert Delivery.objects.filter(issue=issue, status=S.SENT).count() == 60


def test_two_workers_share_the_rate_and_split_the_work(ready_issue, smtp_sink, start_worker):
    issue, _ = ready_issue(n=150)
    rate = 30
    env = dict(FAST, EMAIL_URL=smtp_sink.url, SEND_RATE=rate, SEND_WINDOW=5, SEND_BATCH_SIZE=10, SEND_CHAINS=4)
    with start_worker(name="left", **env) as left, start_worker(name="right", **env) as right:
        started = time.monotonic()
        engine.start_send(issue.pk)
        wait_until(lambda: issue_status(issue) == Issue.Status.SENT, 60, "the send did not complete")
        elapsed = time.monotonic() - started
    assert_exactly_once(issue, smtp_sink)
    workers = Counter(w.split("-")[0] for w in Delivery.objects.filter(issue=issue).values_list("claimed_by", flat=True))
    assert workers["left"] > 0 and workers["right"] > 0 and sum(workers.values()) == 150
    # One bucket for both: 150 messages at 30/s with about a second of burst take 4 s or more;
    # two separate buckets would have let them through in about 2 s.
    assert elapsed >= (150 - 2 * rate) / rate, elapsed
    assert left.hostname != right.hostname


def test_a_scheduled_issue_goes_out_on_time(ready_issue, smtp_sink, start_worker):
    issue, _ = ready_issue(n=3)
    when = timezone.now() + timedelta(seconds=3)
    engine.schedule_send(issue.pk, when)
    with start_worker(name="beat", beat=True, **dict(FAST, EMAIL_URL=smtp_sink.url)):
        wait_until(lambda: issue_status(issue) == Issue.Status.SENT, 30, "the scheduled send never happened")
    issue.refresh_from_db()
    assert issue.send_started_at >= when
    assert len(smtp_sink.messages) == 3


@pytest.mark.usefixtures("fresh_rate_limits")
@pytest.mark.parametrize("topology, limit", [("own worker", 3), ("one shared worker", 8)])
def test_a_confirmation_arrives_within_seconds_while_a_large_send_runs(
    ready_issue, smtp_sink, start_worker, topology, limit
):
    """As docker-compose runs it, the transactional queue has a worker of its own. Even with one
    worker process for every queue (make run), bulk batches stay short, so a confirmation waits
    only for a few of them."""
    import contextlib

    from subscribers.services import signup

    issue, _ = ready_issue(n=3000)
    env = dict(FAST, EMAIL_URL=smtp_sink.url, SEND_RATE=150, SEND_WINDOW=10, SEND_CHAINS=4)
    with contextlib.ExitStack() as workers:
        if topology == "own worker":
            workers.enter_context(start_worker(name="bulk", queues="bulk,default", beat=True, **env))
            workers.enter_context(start_worker(name="transactional", queues="transactional", **env))
        else:
            workers.enter_context(start_worker(name="shared", beat=True, **env))
        engine.start_send(issue.pk)
        wait_until(lambda: len(smtp_sink.messages) >= 300, 60, "the send never got going")
        signed_up = time.monotonic()
        signup(newsletter=issue.newsletter, email="new.fan@example.com", form="page", ip="203.0.113.9")
        wait_until(lambda: smtp_sink.to("new.fan@example.com"), 20, "no confirmation within 20 s")
        waited = time.monotonic() - signed_up
        assert issue_status(issue) == Issue.Status.SENDING  # the big send was still going
    assert waited < limit, waited
