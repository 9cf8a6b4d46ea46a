"""Bounces and complaints end to end, and the guard they feed.

Through SES (moto_server) to the mailbox simulator's bounce@ and complaint@ addresses; SES's
notifications for them reach the SNS endpoint signed as SNS signs them (posted by the test: moto
does not play the simulator), and the next issue skips both addresses. Then the guard: a send
whose first sample bounces or draws complaints past the limits pauses itself, and resumes whole.
"""

import json
import urllib.request

import boto3
import pytest

from delivery import engine
from delivery.models import Delivery, OutboxMessage
from newsletters.models import Issue
from subscribers.models import Subscription, Suppression

from .test_send_ses import _raw_messages, aws_env, moto_server  # noqa: F401  (fixtures)
from .test_sns_feedback import bounce, complaint, notification, post, sns, standin  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
BOUNCE, COMPLAINT = "bounce@simulator.amazonses.com", "complaint@simulator.amazonses.com"


def send_all(issue):
    engine.start_send(issue.pk)
    while engine.send_next_batch(issue.pk, "w")[0] == "again":
        pass


def test_the_simulators_bounce_and_complaint_stop_mail_to_them(
        client, sns, moto_server, ready_issue, subscribe, transport_settings, monkeypatch):  # noqa: F811
    monkeypatch.setattr(engine.chains, "kick", lambda *a, **k: None)
    transport_settings("ses://us-east-1", SEND_RATE=1000)
    boto3.client("sesv2", region_name="us-east-1", endpoint_url=moto_server).create_email_identity(
        EmailIdentity="sender.example"
    )
    issue, _ = ready_issue(n=2)
    for address in (BOUNCE, COMPLAINT):
        subscribe(issue.newsletter, address)
    send_all(issue)
    rows = {row.subscriber.email: row for row in Delivery.objects.filter(issue=issue).select_related("subscriber")}
    assert {row.status for row in rows.values()} == {Delivery.Status.SENT} and len(rows) == 4

    # What SES publishes for the simulator's two addresses, about the messages it accepted.
    assert post(client, notification(sns, bounce(rows[BOUNCE]))).status_code == 200
    assert post(client, notification(sns, complaint(rows[COMPLAINT]))).status_code == 200
    assert set(Suppression.objects.values_list("email", flat=True)) == {BOUNCE, COMPLAINT}
    statuses = dict(Subscription.objects.filter(newsletter=issue.newsletter).values_list("subscriber__email", "status"))
    assert statuses[BOUNCE] == Subscription.Status.BOUNCED
    assert statuses[COMPLAINT] == Subscription.Status.COMPLAINED

    following = Issue.objects.create(newsletter=issue.newsletter, title="Issue two", slug="issue-two",
                                     body_markdown="Again.")
    send_all(following)
    reached = set(Delivery.objects.filter(issue=following).values_list("subscriber__email", flat=True))
    assert reached == {"fan0@fans.example", "fan1@fans.example"}
    raw = _raw_messages(json.load(urllib.request.urlopen(f"{moto_server}/moto-api/data.json")))
    assert sum("Issue two" in message for message in raw) == 2
    assert not any("Issue two" in message and ("To: " + BOUNCE in message or "To: " + COMPLAINT in message)
                   for message in raw)

    # Erasing a fan erases what the providers said about them; the suppression stays, as a digest.
    from feedback.models import FeedbackEvent
    from subscribers.erasure import erase_subscriber

    assert FeedbackEvent.objects.filter(recipient=BOUNCE).exists()
    erase_subscriber(rows[BOUNCE].subscriber_id, actor="test")
    assert not FeedbackEvent.objects.filter(recipient=BOUNCE).exists()
    assert FeedbackEvent.objects.filter(recipient=COMPLAINT).exists()


@pytest.fixture
def half_sent(ready_issue, settings, monkeypatch):
    """An issue of 40 whose first 20 went out (through the dev outbox) and whose rest are pending."""
    monkeypatch.setattr(engine.chains, "kick", lambda *a, **k: None)
    settings.SEND_BATCH_SIZE, settings.SEND_GUARD_SAMPLE, settings.SEND_GUARD_EVERY_SECONDS = 20, 10, 0
    issue, _ = ready_issue(n=40)
    engine.start_send(issue.pk)
    assert engine.send_next_batch(issue.pk, "w") == ("again", 0)
    rows = list(Delivery.objects.filter(issue=issue, status=Delivery.Status.SENT).select_related("subscriber"))
    assert len(rows) == 20
    return issue, rows


def finish_and_check(issue):
    assert engine.resume(issue.pk)
    while engine.send_next_batch(issue.pk, "w")[0] == "again":
        pass
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENT
    assert Delivery.objects.filter(issue=issue, status=Delivery.Status.SENT).count() == 40
    sent_to = list(OutboxMessage.objects.filter(subject="Issue one").values_list("to", flat=True))
    assert len(sent_to) == len(set(sent_to)) == 40  # resumed from where it stopped: nobody twice


def test_hard_bounces_past_five_percent_of_the_first_sample_pause_the_send(client, sns, half_sent):
    issue, rows = half_sent
    assert post(client, notification(sns, bounce(rows[0]))).status_code == 200  # 1 in 20: 5 %, not over
    assert Issue.objects.get(pk=issue.pk).status == Issue.Status.SENDING
    assert post(client, notification(sns, bounce(rows[1], bounce_type="Transient"))).status_code == 200
    assert Issue.objects.get(pk=issue.pk).status == Issue.Status.SENDING  # a soft bounce is not counted
    assert post(client, notification(sns, bounce(rows[2]))).status_code == 200  # 2 in 20: 10 %
    issue.refresh_from_db()
    assert issue.status == Issue.Status.PAUSED
    assert issue.paused_reason.startswith("2 of the first 20 messages bounced for good (10.0%)")
    assert engine.send_next_batch(issue.pk, "w") == ("done", 0)
    assert Delivery.objects.filter(issue=issue, status=Delivery.Status.PENDING).count() == 20
    finish_and_check(issue)


def test_complaints_past_a_tenth_of_a_percent_pause_the_send(client, sns, half_sent):
    issue, rows = half_sent
    assert post(client, notification(sns, complaint(rows[5]))).status_code == 200
    issue.refresh_from_db()
    assert issue.status == Issue.Status.PAUSED
    assert "marked it as spam" in issue.paused_reason
    finish_and_check(issue)


def test_the_guard_counts_at_most_once_an_interval_per_issue(client, sns, half_sent, settings):
    """A burst of bounces costs one count per interval, not one each; the next count after it sees them all."""
    from django.core.cache import cache

    issue, rows = half_sent
    settings.SEND_GUARD_EVERY_SECONDS = 60
    cache.delete(f"ownedaudience:send-guard:{issue.pk}")
    for row in rows[:4]:
        assert post(client, notification(sns, bounce(row))).status_code == 200
    # The first count saw 1 in 20 (not over); the next three came within the interval.
    assert Issue.objects.get(pk=issue.pk).status == Issue.Status.SENDING
    cache.delete(f"ownedaudience:send-guard:{issue.pk}")  # the interval is over
    assert post(client, notification(sns, bounce(rows[4]))).status_code == 200
    assert Issue.objects.get(pk=issue.pk).paused_reason.startswith("5 of the first 20 messages bounced")


def test_the_guard_waits_for_the_first_sample(client, sns, half_sent, settings):
    issue, rows = half_sent
    settings.SEND_GUARD_SAMPLE = 1000
    for row in rows[:5]:
        assert post(client, notification(sns, bounce(row))).status_code == 200
    assert Issue.objects.get(pk=issue.pk).status == Issue.Status.SENDING
