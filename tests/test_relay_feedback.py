"""An SMTP relay's bounce webhook: Postmark and Mailgun JSON posted to /feedback/relay/<secret>/."""

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from delivery.models import Delivery
from feedback.models import FeedbackEvent
from subscribers.models import Subscription, SubscriptionEvent, Suppression

from .test_sns_feedback import state

SECRET = "s3cret-relay-token"
URL = f"/feedback/relay/{SECRET}/"

BOUNCED_AT = datetime.now(UTC).replace(microsecond=907025) - timedelta(hours=1)

pytestmark = pytest.mark.django_db


@pytest.fixture
def relay(settings):
    settings.RELAY_WEBHOOK_SECRET = SECRET
    settings.SES_TRANSIENT_BOUNCE_LIMIT = 3
    return settings


def sent_through_a_relay(ready_issue, n):
    """An issue sent to n fans through a relay: our Message-ID (delivery/mime.py) names each ledger row."""
    issue, subscriptions = ready_issue(n=n)
    rows = [
        Delivery.objects.create(issue=issue, subscriber=subscription.subscriber, status=Delivery.Status.SENT,
                                sent_at=timezone.now())
        for subscription in subscriptions
    ]
    for row in rows:
        row.message_id = f"<oa.{issue.pk}.{row.pk}@sender.example>"
        row.save(update_fields=["message_id"])
    return issue, subscriptions, rows


@pytest.fixture
def sent(ready_issue):
    return sent_through_a_relay(ready_issue, 2)


def postmark_bounce(row, bounce_type="HardBounce", event_id=4323372036854775807):
    return {
        "RecordType": "Bounce", "MessageStream": "outbound", "ID": event_id, "Type": bounce_type,
        "TypeCode": 1, "Name": "Hard bounce", "Tag": "", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": row.subscriber.email.upper(), "From": "zine@sender.example",
        "BouncedAt": BOUNCED_AT.strftime("%Y-%m-%dT%H:%M:%S.%f") + "9Z",  # Postmark writes 7 digits "DumpAvailable": True, "Inactive": True,
        "Subject": "Issue one",
        "Headers": [{"Name": "Message-ID", "Value": row.message_id}],
    }


def mailgun(row, event="failed", severity="permanent", event_id="G9Bn5sl1TC6nu79C8C0bwg"):
    data = {
        "id": event_id, "event": event, "timestamp": time.time(), "recipient": row.subscriber.email,
        "log-level": "error", "reason": "bounce",
        "delivery-status": {"code": 550, "message": "5.1.1 No such user", "description": ""},
        "message": {"headers": {"to": row.subscriber.email, "message-id": row.message_id.strip("<>"),
                                "from": "zine@sender.example", "subject": "Issue one"}},
    }
    if event == "failed":
        data["severity"] = severity
    return {"signature": {"timestamp": "1764779634", "token": "t", "signature": "s"}, "event-data": data}


def post(client, payload, url=URL):
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return client.post(url, data=body, content_type="application/json")


def test_a_postmark_hard_bounce_suppresses_the_address_and_marks_it_bounced(client, relay, sent):
    _, subscriptions, rows = sent
    answer = post(client, postmark_bounce(rows[0]))
    assert (answer.status_code, answer.content) == (200, b"applied")
    address = rows[0].subscriber.email
    assert Suppression.objects.get(email__iexact=address).reason == Suppression.Reason.BOUNCE
    subscriptions[0].refresh_from_db()
    assert subscriptions[0].status == Subscription.Status.BOUNCED
    assert SubscriptionEvent.objects.filter(
        subscription=subscriptions[0], kind=SubscriptionEvent.Kind.BOUNCE, actor="relay"
    ).exists()
    event = FeedbackEvent.objects.get()
    assert (event.sns_message_id, event.kind, event.subtype, event.delivery_id, event.recipient) == (
        "postmark:4323372036854775807", "bounce", "Permanent", rows[0].pk, address
    )
    assert event.at == BOUNCED_AT
    subscriptions[1].refresh_from_db()
    assert subscriptions[1].status == Subscription.Status.ACTIVE


def test_a_mailgun_complaint_unsubscribes_the_fan_and_suppresses_the_address(client, relay, sent, make_creator,
                                                                            subscribe):
    _, subscriptions, rows = sent
    _, other = make_creator("other")
    elsewhere = subscribe(other, rows[1].subscriber.email)
    answer = post(client, mailgun(rows[1], event="complained"))
    assert (answer.status_code, answer.content) == (200, b"applied")
    subscriptions[1].refresh_from_db()
    assert subscriptions[1].status == Subscription.Status.COMPLAINED
    assert subscriptions[1].unsubscribed_at is not None
    assert SubscriptionEvent.objects.filter(
        subscription=subscriptions[1], kind=SubscriptionEvent.Kind.COMPLAINT, actor="relay"
    ).exists()
    assert Suppression.objects.get(email__iexact=rows[1].subscriber.email).reason == Suppression.Reason.COMPLAINT
    elsewhere.refresh_from_db()
    assert elsewhere.status == Subscription.Status.ACTIVE
    event = FeedbackEvent.objects.get()
    assert (event.sns_message_id, event.kind, event.delivery_id) == (
        "mailgun:G9Bn5sl1TC6nu79C8C0bwg", "complaint", rows[1].pk
    )


def test_a_mailgun_permanent_failure_is_a_hard_bounce(client, relay, sent):
    _, subscriptions, rows = sent
    assert post(client, mailgun(rows[0])).status_code == 200
    subscriptions[0].refresh_from_db()
    assert subscriptions[0].status == Subscription.Status.BOUNCED
    assert FeedbackEvent.objects.get().delivery_id == rows[0].pk


@pytest.mark.parametrize("soft", [
    lambda row, n: postmark_bounce(row, "SoftBounce", event_id=n),
    lambda row, n: mailgun(row, severity="temporary", event_id=f"temp-{n}"),
], ids=["postmark", "mailgun"])
def test_soft_bounces_suppress_only_at_the_transient_limit(client, relay, sent, soft):
    _, subscriptions, rows = sent
    for n in range(2):
        assert post(client, soft(rows[0], n)).status_code == 200
    assert not Suppression.objects.exists()
    subscriptions[0].refresh_from_db()
    assert subscriptions[0].status == Subscription.Status.ACTIVE
    assert post(client, soft(rows[0], 2)).status_code == 200
    subscriptions[0].refresh_from_db()
    assert subscriptions[0].status == Subscription.Status.BOUNCED
    assert Suppression.objects.get().reason == Suppression.Reason.BOUNCE


def test_a_replayed_payload_changes_nothing(client, relay, sent):
    _, _, rows = sent
    for payload in (postmark_bounce(rows[0], "SoftBounce"), mailgun(rows[1], event="complained")):
        assert post(client, payload).content == b"applied"
        before = state()
        for _ in range(2):
            answer = post(client, payload)
            assert (answer.status_code, answer.content) == (200, b"replayed")
        assert state() == before


def test_the_same_event_id_from_two_providers_is_two_events(client, relay, sent):
    _, _, rows = sent
    post(client, postmark_bounce(rows[0], "SoftBounce", event_id="same"))
    post(client, mailgun(rows[0], severity="temporary", event_id="same"))
    assert FeedbackEvent.objects.count() == 2


@pytest.mark.parametrize("configured, url", [
    (SECRET, "/feedback/relay/wrong-secret/"),
    (SECRET, f"/feedback/relay/{SECRET}x/"),
    ("", "/feedback/relay/anything/"),
])
def test_a_wrong_secret_or_no_secret_configured_is_404_and_changes_nothing(client, relay, sent, configured, url):
    _, _, rows = sent
    relay.RELAY_WEBHOOK_SECRET = configured
    before = state()
    assert post(client, postmark_bounce(rows[0]), url=url).status_code == 404
    assert state() == before


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'"Bounce"', {"RecordType": "Delivery", "Email": "fan0@fans.example", "ID": 1},
    {"hello": "world"}, {"RecordType": "Bounce", "Type": "HardBounce", "Email": "fan0@fans.example"},
    {"RecordType": "Bounce", "Type": "HardBounce", "ID": 7},
    {"event-data": {"event": "failed", "severity": "permanent", "recipient": "fan0@fans.example"}},
    {"event-data": {"id": "x", "event": "failed", "recipient": "not an address"}},
], ids=["text", "list", "string", "postmark-delivery", "unknown", "no-id", "no-email", "mailgun-no-id",
        "mailgun-bad-recipient"])
def test_unknown_shapes_are_400_with_a_reason_and_change_nothing(client, relay, sent, body):
    before = state()
    answer = post(client, body)
    assert answer.status_code == 400
    assert answer.content.startswith(b"Refused: ")
    assert state() == before


def test_other_postmark_types_are_recorded_and_change_nothing_else(client, relay, sent):
    _, _, rows = sent
    before = state()
    assert post(client, postmark_bounce(rows[0], "AutoResponder")).content == b"applied"
    assert FeedbackEvent.objects.get().kind == FeedbackEvent.Kind.OTHER
    assert state()[:3] == before[:3]


def test_a_body_over_the_limit_is_413(client, relay, sent):
    from feedback.views import RELAY_MAX_BODY_BYTES

    payload = postmark_bounce(sent[2][0])
    payload["Content"] = "x" * RELAY_MAX_BODY_BYTES
    before = state()
    assert post(client, payload).status_code == 413
    assert state() == before


def test_only_post_is_allowed(client, relay):
    assert client.get(URL).status_code == 405
    assert client.put(URL, data="{}").status_code == 405


def test_no_csrf_token_is_needed(relay, sent):
    from django.test import Client

    answer = post(Client(enforce_csrf_checks=True), postmark_bounce(sent[2][0]))
    assert answer.status_code == 200
