"""The send engine's invariants, driven in-process against PostgreSQL and a real SMTP sink."""

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from delivery import engine
from delivery.models import Delivery, DeliveryClaim
from newsletters import rendering
from newsletters.models import Issue
from subscribers.models import Subscriber, Subscription, Suppression
from subscribers.tokens import make_token
from transports import FAILED, RETRY, UNKNOWN, Result

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
S = Delivery.Status


def drain(issue, worker="w1", rounds=100):
    """Run batches in this process until the engine says there is nothing left."""
    for _ in range(rounds):
        step, _ = engine.send_next_batch(issue.pk, worker)
        if step != "again":
            return step
    raise AssertionError("the send did not finish")


@pytest.fixture
def no_kick(monkeypatch):
    """Keep start_send from queueing Celery tasks: these tests drive the batches themselves."""
    monkeypatch.setattr(engine.chains, "kick", lambda *args, **kwargs: None)


# ------------------------------------------------------------------ snapshot


def test_snapshot_holds_only_confirmed_unsuppressed_subscribers(ready_issue, subscribe, no_kick):
    issue, active = ready_issue(n=3)
    newsletter = issue.newsletter
    for status in ["pending", "unsubscribed", "bounced", "complained"]:
        subscribe(newsletter, f"{status}@fans.example", status=status)
    suppressed = subscribe(newsletter, "Blocked@Fans.example")
    Suppression.objects.create(email="blocked@fans.example", reason="complaint")

    assert engine.start_send(issue.pk) == 3
    recipients = set(Delivery.objects.filter(issue=issue).values_list("subscriber__email", flat=True))
    assert recipients == {s.subscriber.email for s in active}
    assert suppressed.subscriber.email not in recipients


def test_people_who_join_after_the_send_starts_are_not_added(ready_issue, subscribe, no_kick, transport_settings,
                                                              smtp_sink):
    transport_settings(smtp_sink.url)
    issue, _ = ready_issue(n=2)
    engine.start_send(issue.pk)
    subscribe(issue.newsletter, "latecomer@fans.example")
    drain(issue)
    assert Delivery.objects.filter(issue=issue).count() == 2
    assert not smtp_sink.to("latecomer@fans.example")


def test_starting_twice_snapshots_once(ready_issue, no_kick):
    issue, _ = ready_issue(n=4)
    assert engine.start_send(issue.pk) == 4
    assert engine.start_send(issue.pk) == 4
    assert Delivery.objects.filter(issue=issue).count() == 4


def test_a_paid_issue_goes_to_paying_members_only(ready_issue, subscribe, no_kick):
    issue, _ = ready_issue(n=2)
    member = subscribe(issue.newsletter, "member@fans.example", tier="paid")
    issue.audience = Issue.Audience.PAID
    issue.save()
    assert engine.start_send(issue.pk) == 1
    assert Delivery.objects.get(issue=issue).subscriber_id == member.subscriber_id


# ------------------------------------------------------------------ claim, send, record


def test_every_recipient_gets_one_message_with_the_providers_id(ready_issue, no_kick, transport_settings, smtp_sink):
    transport_settings(smtp_sink.url, SEND_BATCH_SIZE=7, SEND_WINDOW=3)
    issue, subscriptions = ready_issue(n=20)
    engine.start_send(issue.pk)
    assert drain(issue) == "done"
    for subscription in subscriptions:
        assert len(smtp_sink.to(subscription.subscriber.email)) == 1
    sent = Delivery.objects.filter(issue=issue)
    assert set(sent.values_list("status", flat=True)) == {S.SENT}
    assert all(mid.startswith("<oa.") for mid in sent.values_list("message_id", flat=True))
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENT and issue.sent_at is not None


def test_a_duplicated_task_finds_nothing_to_send_twice(ready_issue, no_kick, transport_settings, smtp_sink):
    transport_settings(smtp_sink.url, SEND_BATCH_SIZE=5)
    issue, _ = ready_issue(n=5)
    engine.start_send(issue.pk)
    assert engine.send_next_batch(issue.pk, "w1") == ("again", 0)
    # The same task delivered again, and a second worker on it: nothing left to claim.
    assert engine.send_next_batch(issue.pk, "w1")[0] == "done"
    assert engine.send_next_batch(issue.pk, "w2")[0] == "done"
    assert len(smtp_sink.messages) == 5


def test_claims_never_overlap(ready_issue, no_kick):
    issue, _ = ready_issue(n=10)
    engine.start_send(issue.pk)
    first_token, first = engine.claim(issue.pk, "a", 6)
    second_token, second = engine.claim(issue.pk, "b", 6)
    assert len(first) == 6 and len(second) == 4 and not set(first) & set(second)
    assert engine.claim(issue.pk, "c", 6) == (None, [])


def test_a_fan_who_leaves_mid_send_is_skipped(ready_issue, no_kick, transport_settings, smtp_sink):
    transport_settings(smtp_sink.url)
    issue, subscriptions = ready_issue(n=3)
    engine.start_send(issue.pk)
    Subscription.objects.filter(pk=subscriptions[0].pk).update(status="unsubscribed")
    drain(issue)
    assert not smtp_sink.to(subscriptions[0].subscriber.email)
    assert Delivery.objects.get(issue=issue, subscriber=subscriptions[0].subscriber).status == S.SKIPPED


def test_smtp_refusals_retry_or_fail_with_the_reason(ready_issue, no_kick, transport_settings, smtp_sink):
    transport_settings(smtp_sink.url, SEND_RETRY_BASE_SECONDS=60)
    issue, _ = ready_issue(n=2)
    engine.start_send(issue.pk)
    smtp_sink.refuse("450 4.2.1 Mailbox busy, try again later")
    step, wait = engine.send_next_batch(issue.pk, "w1")
    assert engine.send_next_batch(issue.pk, "w1")[0] == "later"
    rows = Delivery.objects.filter(issue=issue)
    assert set(rows.values_list("status", flat=True)) == {S.PENDING}
    assert all(row.next_attempt_at > timezone.now() + timedelta(seconds=30) for row in rows)
    assert "450" in rows.first().error

    smtp_sink.refuse("550 5.1.1 No such user")
    rows.update(next_attempt_at=None)
    drain(issue)
    assert set(rows.values_list("status", flat=True)) == {S.FAILED}
    assert "550 5.1.1 No such user" in rows.first().error
    issue.refresh_from_db()
    assert issue.status == Issue.Status.FAILED


def test_transient_errors_give_up_once_their_time_is_spent(ready_issue, no_kick, transport_settings, smtp_sink):
    """A row's budget is a time, as in mail servers: it fails at its first error past it."""
    transport_settings(smtp_sink.url, SEND_RETRY_BASE_SECONDS=0, SEND_RETRY_FOR_SECONDS=3600)
    issue, _ = ready_issue(n=1)
    engine.start_send(issue.pk)
    smtp_sink.refuse("450 4.2.1 Busy")
    engine.send_next_batch(issue.pk, "w1")
    row = Delivery.objects.get(issue=issue)
    assert row.status == S.PENDING and "450" in row.error
    assert timedelta(minutes=59) < row.retry_until - timezone.now() <= timedelta(hours=1)
    for _ in range(5):  # attempts alone never fail it
        Delivery.objects.filter(pk=row.pk).update(next_attempt_at=None)
        engine.send_next_batch(issue.pk, "w1")
    assert Delivery.objects.get(pk=row.pk).status == S.PENDING
    Delivery.objects.filter(pk=row.pk).update(next_attempt_at=None, retry_until=timezone.now() - timedelta(seconds=1))
    drain(issue)
    row.refresh_from_db()
    assert row.status == S.FAILED and "gave up after 1 hours" in row.error and "450" in row.error
    issue.refresh_from_db()
    assert issue.status == Issue.Status.FAILED


def test_throttling_pauses_the_send_and_costs_the_rows_nothing(ready_issue, no_kick, transport_settings, smtp_sink):
    from transports import ratelimit

    transport_settings(smtp_sink.url, REDIS_URL="", SEND_PAUSE_BASE_SECONDS=30, SEND_PAUSE_MAX_SECONDS=60)
    issue, _ = ready_issue(n=6)
    engine.start_send(issue.pk)
    smtp_sink.refuse("421 4.7.0 Too many messages, slow down")
    step, wait = engine.send_next_batch(issue.pk, "w1")
    assert step == "later" and 25 < wait <= 30
    # One group tried (the six side by side, a connection each), then the whole send paused.
    assert smtp_sink.handler.refusals == 6
    rows = Delivery.objects.filter(issue=issue)
    assert set(rows.values_list("status", flat=True)) == {S.PENDING}
    assert set(rows.values_list("attempts", flat=True)) == {0}
    # Every batch waits out the pause without touching a row.
    assert engine.send_next_batch(issue.pk, "w2")[0] == "later"
    assert smtp_sink.handler.refusals == 6
    smtp_sink.accept()
    ratelimit._bucket.paused_until = 0  # the pause is over
    assert drain(issue) == "done"
    assert len(smtp_sink.messages) == 6
    assert set(rows.values_list("attempts", flat=True)) == {1}


def test_retry_delays_grow():
    delays = [engine.retry_delay(attempt) for attempt in (1, 2, 3, 4)]
    assert delays == sorted(delays)


def test_results_for_rows_no_longer_ours_are_ignored(ready_issue, no_kick):
    issue, _ = ready_issue(n=2)
    engine.start_send(issue.pk)
    token, ids = engine.claim(issue.pk, "w1", 2)
    engine.write(token, hand_over=ids)
    engine.record(issue.pk, uuid.uuid4(), [Result(ids[0], FAILED, error="not mine")], {})
    assert Delivery.objects.get(pk=ids[0]).status == S.SENDING


# ------------------------------------------------------------------ leases and unknown rows


def expire_leases():
    DeliveryClaim.objects.update(lease_until=timezone.now() - timedelta(seconds=1))


def test_expired_leases_return_claimed_rows_and_mark_sending_rows_unknown(ready_issue, no_kick):
    issue, _ = ready_issue(n=4)
    engine.start_send(issue.pk)
    token, ids = engine.claim(issue.pk, "dead-worker", 4)
    engine.write(token, hand_over=ids[:2])  # the worker died while these two were on the wire
    assert engine.recover_expired_leases(issue.pk) == (0, 0)  # the lease still runs
    expire_leases()
    assert engine.recover_expired_leases(issue.pk) == (2, 2)
    assert not DeliveryClaim.objects.exists()
    statuses = dict(Delivery.objects.filter(issue=issue).values_list("id", "status"))
    assert [statuses[i] for i in ids] == [S.UNKNOWN, S.UNKNOWN, S.PENDING, S.PENDING]


def test_unknown_rows_are_not_resent_on_their_own(ready_issue, no_kick, transport_settings, smtp_sink):
    transport_settings(smtp_sink.url)
    issue, subscriptions = ready_issue(n=3)
    engine.start_send(issue.pk)
    token, ids = engine.claim(issue.pk, "dead-worker", 1)
    engine.write(token, hand_over=ids)
    expire_leases()
    engine.recover_expired_leases(issue.pk)
    drain(issue)
    engine.watchdog()
    assert len(smtp_sink.messages) == 2
    assert Delivery.objects.get(pk=ids[0]).status == S.UNKNOWN
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENT


def test_creator_resolves_unknown_rows(ready_issue, no_kick, transport_settings, smtp_sink):
    transport_settings(smtp_sink.url)
    issue, _ = ready_issue(n=2)
    engine.start_send(issue.pk)
    Delivery.objects.filter(issue=issue).update(status=S.UNKNOWN)
    assert engine.resolve_unknown(issue.pk, resend=True) == 2
    drain(issue)
    assert len(smtp_sink.messages) == 2
    Delivery.objects.filter(issue=issue).update(status=S.UNKNOWN)
    assert engine.resolve_unknown(issue.pk, resend=False) == 2
    assert set(Delivery.objects.filter(issue=issue).values_list("status", flat=True)) == {S.SENT}


def test_retry_failed_sends_the_failed_rows_again(ready_issue, no_kick, transport_settings, smtp_sink):
    transport_settings(smtp_sink.url)
    issue, _ = ready_issue(n=2)
    engine.start_send(issue.pk)
    smtp_sink.refuse("554 5.7.1 Rejected for now")
    drain(issue)
    issue.refresh_from_db()
    assert issue.status == Issue.Status.FAILED
    smtp_sink.accept()
    assert engine.retry_failed(issue.pk) == 2
    drain(issue)
    assert len(smtp_sink.messages) == 2
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENT


# ------------------------------------------------------------------ render once


def test_markdown_is_rendered_once_per_audience_not_per_recipient(ready_issue, no_kick, transport_settings,
                                                                  monkeypatch):
    transport_settings("discard://", SEND_BATCH_SIZE=10)
    calls = []
    real = rendering.markdown_to_html
    monkeypatch.setattr(rendering, "markdown_to_html", lambda body: calls.append(1) or real(body))
    issue, _ = ready_issue(n=40)
    engine.start_send(issue.pk)
    drain(issue)
    assert len(calls) == 3  # free and paid emails and the web version, whatever the number of recipients
    assert Delivery.objects.filter(issue=issue, status=S.SENT).count() == 40


def test_each_copy_differs_only_in_its_personal_parts(ready_issue, no_kick, transport_settings, smtp_sink):
    transport_settings(smtp_sink.url)
    issue, subscriptions = ready_issue(n=2)
    engine.start_send(issue.pk)
    drain(issue)
    a, b = (smtp_sink.to(s.subscriber.email)[0].message for s in subscriptions)
    html_a, html_b = (m.get_body(("html",)).get_content() for m in (a, b))
    token_a = a["List-Unsubscribe"].split("/unsubscribe/")[1].split(">")[0]
    token_b = b["List-Unsubscribe"].split("/unsubscribe/")[1].split(">")[0]
    assert token_a != token_b
    assert html_a != html_b
    assert html_a.replace(token_a, "T").replace(make_token("preferences", subscriptions[0].pk), "P") == (
        html_b.replace(token_b, "T").replace(make_token("preferences", subscriptions[1].pk), "P")
    )


def test_outcomes_map_unknown_to_unknown(ready_issue, no_kick):
    issue, _ = ready_issue(n=1)
    engine.start_send(issue.pk)
    token, ids = engine.claim(issue.pk, "w", 1)
    engine.write(token, hand_over=ids)
    engine.record(issue.pk, token, [Result(ids[0], UNKNOWN, error="connection lost")], {ids[0]: 1})
    assert Delivery.objects.get(pk=ids[0]).status == S.UNKNOWN
    engine.record(issue.pk, token, [Result(ids[0], RETRY, error="x")], {ids[0]: 1})  # late truth, same claim
    assert Delivery.objects.get(pk=ids[0]).status == S.PENDING


def test_a_late_retry_after_the_watchdog_gave_up_reopens_the_closed_issue(ready_issue, no_kick):
    """The lease ran out while a slow worker was still sending: its rows became unknown and the
    issue closed; the worker then learns the relay refused them for now. The issue reopens."""
    issue, _ = ready_issue(n=2)
    engine.start_send(issue.pk)
    token, ids = engine.claim(issue.pk, "slow", 2)
    engine.write(token, hand_over=ids)
    expire_leases()
    engine.watchdog()
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENT
    engine.record(issue.pk, token, [Result(i, RETRY, error="450 later") for i in ids], {i: 1 for i in ids})
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENDING
    assert set(Delivery.objects.filter(issue=issue).values_list("status", flat=True)) == {S.PENDING}
    assert not engine.finish(issue.pk)


def test_the_watchdog_restarts_chains_only_when_none_reports_in(ready_issue, monkeypatch):
    from django.core.cache import cache

    kicks = []
    monkeypatch.setattr(engine.chains, "kick", lambda issue_id, chains=1: kicks.append(chains))
    issue, _ = ready_issue(n=3)
    engine.start_send(issue.pk)
    cache.delete(engine._chain_key(issue.pk))
    engine.watchdog()  # nobody is working on it: restart the chains
    assert kicks == [settings.SEND_CHAINS]
    engine.watchdog()  # they were just asked; no pile-up of extra chains
    engine.chain_alive(issue.pk)
    engine.watchdog()
    assert kicks == [settings.SEND_CHAINS]
    cache.delete(engine._chain_key(issue.pk))


def test_tasks_stay_short_and_are_never_lost_with_a_worker(transport_settings, settings):
    from ownedaudience.celery import app

    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    # A batch is sized to last about SEND_BATCH_SECONDS at the account's rate, far inside the
    # time the broker waits before it hands an unacknowledged task to another worker.
    transport_settings("discard://", SEND_RATE=14, SEND_BATCH_SECONDS=20)
    from transports import get_transport

    assert engine.batch_size(get_transport()) * 1.0 / 14 <= 20 + 1
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
    assert visibility >= 10 * settings.SEND_BATCH_SECONDS


def test_the_links_in_an_issue_work_for_the_fan(ready_issue, no_kick, transport_settings, smtp_sink, client):
    """The one-click link of a sent issue, posted exactly as Gmail posts it, takes the fan off the list."""
    transport_settings(smtp_sink.url)
    issue, subscriptions = ready_issue(n=2)
    engine.start_send(issue.pk)
    drain(issue)
    message = smtp_sink.to(subscriptions[0].subscriber.email)[0].message
    https = message["List-Unsubscribe"].split(",")[0].strip(" <>")
    path = https.split("://", 1)[1].split("/", 1)[1]
    response = client.post("/" + path, "List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    subscriptions[0].refresh_from_db()
    subscriptions[1].refresh_from_db()
    assert subscriptions[0].status == Subscription.Status.UNSUBSCRIBED
    assert subscriptions[1].status == Subscription.Status.ACTIVE
    preferences = message.get_body(("plain",)).get_content().split("/preferences/")[1].split()[0]
    assert client.get(f"/preferences/{preferences}").status_code == 200


def test_an_idn_address_among_valid_ones_affects_nobody_else(ready_issue, subscribe, no_kick, transport_settings,
                                                             smtp_sink):
    """An address stored with a Unicode domain goes out in its IDNA form; a Unicode local part
    goes with SMTPUTF8, which this relay offers; the rest of their window is delivered.
    (A relay without SMTPUTF8 fails that one row: tests/test_idn_addresses.py.)"""
    transport_settings(smtp_sink.url, SEND_WINDOW=20)
    issue, subscriptions = ready_issue(n=5)
    idn = Subscriber.objects.create(email="idn@placeholder.example")
    # A row stored before domains were kept in IDNA form (the model spells them so now).
    Subscriber.objects.filter(pk=idn.pk).update(email="idn@exämple.org")
    Subscription.objects.create(subscriber=idn, newsletter=issue.newsletter, status="active")
    Subscription.objects.create(subscriber=Subscriber.objects.create(email="dũng@example.org"),
                                newsletter=issue.newsletter, status="active")
    engine.start_send(issue.pk)
    assert drain(issue) == "done"
    for subscription in subscriptions:
        assert len(smtp_sink.to(subscription.subscriber.email)) == 1
    assert len(smtp_sink.to("idn@xn--exmple-cua.org")) == 1
    rows = dict(Delivery.objects.filter(issue=issue).values_list("subscriber__email", "status"))
    assert rows["idn@exämple.org"] == S.SENT
    assert rows["dũng@example.org"] == S.SENT
    assert len(smtp_sink.to("dũng@example.org")) == 1
    assert len(smtp_sink.messages) == 7
