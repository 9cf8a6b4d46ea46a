"""SES feedback over SNS: messages signed here with a test key, the signing certificate served over
HTTPS by a loopback stand-in for `sns.us-east-1.amazonaws.com` (tests/sns_standin.py)."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from delivery.models import Delivery
from feedback.models import FeedbackEvent
from subscribers.models import Subscription, SubscriptionEvent, Suppression
from subscribers.selectors import audience

from .sns_standin import SnsStandIn, new_key

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
URL = "/feedback/ses/"

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    server = SnsStandIn(tmp_path_factory.mktemp("sns")).start()
    yield server
    server.stop()


@pytest.fixture
def sns(standin, settings):
    settings.SNS_CERTIFICATE_CONNECT_TO = standin.address
    settings.SNS_CA_BUNDLE = str(standin.ca_file)
    settings.SES_SNS_TOPIC_ARNS = [TOPIC]
    settings.SES_TRANSIENT_BOUNCE_LIMIT = 3
    standin.paths.clear()
    return standin


@pytest.fixture
def sent(ready_issue):
    """An issue sent to two fans through SES: their ledger rows carry SES's message ids."""
    issue, subscriptions = ready_issue(n=2)
    rows = [
        Delivery.objects.create(
            issue=issue, subscriber=subscription.subscriber, status=Delivery.Status.SENT,
            message_id=f"0100-ses-{index}", sent_at=timezone.now(),
        )
        for index, subscription in enumerate(subscriptions)
    ]
    return issue, subscriptions, rows


def stamp(at=None):
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ses_event(kind, row, *, identity=False, **body):
    """An SES event about ledger row `row`, as a configuration set publishes it (or, with
    `identity`, as an identity's notifications send it)."""
    address = row.subscriber.email
    event = {
        "eventType" if not identity else "notificationType": kind,
        "mail": {
            "timestamp": stamp(), "messageId": row.message_id, "source": "zine@sender.example",
            "destination": [address],
            "commonHeaders": {"messageId": f"<oa.{row.issue_id}.{row.pk}@sender.example>"},
        },
    }
    event.update(body)
    return event


def bounce(row, bounce_type="Permanent", **kwargs):
    return ses_event("Bounce", row, bounce={
        "bounceType": bounce_type, "bounceSubType": "General", "timestamp": stamp(),
        "bouncedRecipients": [{"emailAddress": row.subscriber.email, "status": "5.1.1"}],
    }, **kwargs)


def complaint(row, **kwargs):
    return ses_event("Complaint", row, complaint={
        "complaintFeedbackType": "abuse", "timestamp": stamp(),
        "complainedRecipients": [{"emailAddress": row.subscriber.email}],
    }, **kwargs)


def notification(standin, event, *, version="1", topic=TOPIC, at=None, cert_url=None, key=None):
    message = {
        "Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": topic,
        "Message": json.dumps(event), "Timestamp": stamp(at),
        "SigningCertURL": cert_url or standin.certificate_url(),
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    }
    return standin.sign(message, version=version, key=key)


def post(client, message, message_type=None):
    return client.post(
        URL, data=json.dumps(message), content_type="text/plain; charset=UTF-8",
        headers={"x-amz-sns-message-type": message_type or message["Type"]},
    )


def state():
    """Everything a message could change."""
    return (
        sorted(Suppression.objects.values_list("email", "reason")),
        sorted(Subscription.objects.values_list("id", "status")),
        SubscriptionEvent.objects.count(),
        FeedbackEvent.objects.count(),
    )


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_permanent_bounce_suppresses_the_address_and_the_next_issue_skips_it(client, sns, sent, version):
    issue, subscriptions, rows = sent
    answer = post(client, notification(sns, bounce(rows[0]), version=version))
    assert answer.status_code == 200, answer.content
    assert answer.content == b"applied"
    address = rows[0].subscriber.email
    assert Suppression.objects.get(email__iexact=address).reason == Suppression.Reason.BOUNCE
    subscriptions[0].refresh_from_db()
    assert subscriptions[0].status == Subscription.Status.BOUNCED
    assert SubscriptionEvent.objects.filter(
        subscription=subscriptions[0], kind=SubscriptionEvent.Kind.BOUNCE, actor="ses"
    ).exists()
    event = FeedbackEvent.objects.get()
    assert (event.kind, event.subtype, event.delivery_id, event.recipient) == (
        "bounce", "Permanent", rows[0].pk, address
    )
    assert address not in set(audience(issue.newsletter_id).values_list("subscriber__email", flat=True))
    assert audience(issue.newsletter_id).count() == 1


def test_a_permanent_bounce_marks_the_address_bounced_on_every_newsletter(client, sns, sent, make_creator,
                                                                          subscribe):
    _, _, rows = sent
    _, other = make_creator("other")
    elsewhere = subscribe(other, rows[0].subscriber.email)
    assert post(client, notification(sns, bounce(rows[0]))).status_code == 200
    elsewhere.refresh_from_db()
    assert elsewhere.status == Subscription.Status.BOUNCED
    assert not audience(other.pk).exists()


def test_an_identity_notification_bounce_is_applied_too(client, sns, sent):
    _, subscriptions, rows = sent
    assert post(client, notification(sns, bounce(rows[1], identity=True), version="2")).status_code == 200
    subscriptions[1].refresh_from_db()
    assert subscriptions[1].status == Subscription.Status.BOUNCED
    assert FeedbackEvent.objects.get().delivery_id == rows[1].pk


def test_a_complaint_unsubscribes_the_fan_from_that_newsletter_and_suppresses_the_address(
    client, sns, sent, make_creator, subscribe
):
    _, subscriptions, rows = sent
    _, other = make_creator("other")
    elsewhere = subscribe(other, rows[0].subscriber.email)
    assert post(client, notification(sns, complaint(rows[0]))).status_code == 200
    subscriptions[0].refresh_from_db()
    assert subscriptions[0].status == Subscription.Status.COMPLAINED
    assert subscriptions[0].unsubscribed_at is not None
    assert SubscriptionEvent.objects.filter(
        subscription=subscriptions[0], kind=SubscriptionEvent.Kind.COMPLAINT, actor="ses"
    ).exists()
    assert Suppression.objects.get(email__iexact=rows[0].subscriber.email).reason == Suppression.Reason.COMPLAINT
    elsewhere.refresh_from_db()
    assert elsewhere.status == Subscription.Status.ACTIVE  # still subscribed there, though no longer mailed
    event = FeedbackEvent.objects.get()
    assert (event.kind, event.subtype, event.delivery_id) == ("complaint", "abuse", rows[0].pk)


def test_transient_bounces_suppress_the_address_only_at_the_limit(client, sns, sent):
    _, subscriptions, rows = sent
    for _ in range(2):
        assert post(client, notification(sns, bounce(rows[0], "Transient"))).status_code == 200
    assert not Suppression.objects.exists()
    subscriptions[0].refresh_from_db()
    assert subscriptions[0].status == Subscription.Status.ACTIVE
    assert post(client, notification(sns, bounce(rows[0], "Transient"))).status_code == 200
    assert Suppression.objects.get(email__iexact=rows[0].subscriber.email).reason == Suppression.Reason.BOUNCE
    subscriptions[0].refresh_from_db()
    assert subscriptions[0].status == Subscription.Status.BOUNCED


def test_transient_bounces_outside_the_window_do_not_count(client, sns, sent):
    _, _, rows = sent
    for _ in range(2):
        assert post(client, notification(sns, bounce(rows[0], "Transient"))).status_code == 200
    FeedbackEvent.objects.update(at=timezone.now() - timedelta(days=8))
    assert post(client, notification(sns, bounce(rows[0], "Transient"))).status_code == 200
    assert not Suppression.objects.exists()


@pytest.mark.parametrize("kind, body", [
    ("Delivery", {"delivery": {"timestamp": "2026-12-03T10:00:00.000Z", "recipients": ["fan0@fans.example"]}}),
    ("Open", {"open": {"timestamp": "2026-12-03T10:05:00.000Z", "userAgent": "Mail"}}),
    ("Click", {"click": {"timestamp": "2026-12-03T10:06:00.000Z", "link": "https://example.org/x"}}),
])
def test_delivery_open_and_click_are_recorded_on_their_ledger_row(client, sns, sent, kind, body):
    _, _, rows = sent
    before = state()[:3]
    assert post(client, notification(sns, ses_event(kind, rows[0], **body), version="2")).status_code == 200
    event = FeedbackEvent.objects.get()
    assert (event.kind, event.delivery_id, event.message_id, event.recipient) == (
        kind.lower(), rows[0].pk, rows[0].message_id, rows[0].subscriber.email
    )
    assert event.at == datetime.fromisoformat(next(iter(body.values()))["timestamp"])
    assert state()[:3] == before


def test_an_event_without_our_message_id_header_finds_its_row_by_the_provider_id(client, sns, sent):
    _, _, rows = sent
    event = ses_event("Delivery", rows[1], delivery={"recipients": [rows[1].subscriber.email]})
    del event["mail"]["commonHeaders"]
    assert post(client, notification(sns, event)).status_code == 200
    assert FeedbackEvent.objects.get().delivery_id == rows[1].pk


def test_a_replayed_message_changes_nothing(client, sns, sent):
    _, _, rows = sent
    message = notification(sns, bounce(rows[0], "Transient"))
    assert post(client, message).content == b"applied"
    before = state()
    for _ in range(3):
        answer = post(client, message)
        assert (answer.status_code, answer.content) == (200, b"replayed")
    assert state() == before


def test_the_certificate_is_fetched_once_and_cached(client, sns, sent):
    _, _, rows = sent
    cert_url = sns.certificate_url()
    for row in rows:
        assert post(client, notification(sns, ses_event("Delivery", row), cert_url=cert_url)).status_code == 200
    assert len([path for path in sns.paths if path.endswith(".pem")]) == 1


def test_a_subscription_confirmation_gets_the_subscribe_url(client, sns):
    subscribe_url = f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=t0k"
    message = sns.sign({
        "Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()), "Token": "t0k", "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe…", "SubscribeURL": subscribe_url, "Timestamp": stamp(),
        "SigningCertURL": sns.certificate_url(),
    }, version="2")
    assert post(client, message).status_code == 200
    assert f"/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=t0k" in sns.paths
    assert FeedbackEvent.objects.get().kind == FeedbackEvent.Kind.SNS_SUBSCRIBED


def test_a_subscribe_url_off_the_sns_hosts_is_never_fetched(client, sns):
    message = sns.sign({
        "Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()), "Token": "t0k", "TopicArn": TOPIC,
        "Message": "…", "SubscribeURL": "https://example.com/?Action=ConfirmSubscription", "Timestamp": stamp(),
        "SigningCertURL": sns.certificate_url(),
    })
    assert post(client, message).status_code == 400
    assert sns.paths == [] and not FeedbackEvent.objects.exists()


def _tampered(sns, row):
    message = notification(sns, bounce(row))
    event = json.loads(message["Message"])
    event["bounce"]["bouncedRecipients"][0]["emailAddress"] = "someone-else@fans.example"
    return {**message, "Message": json.dumps(event)}


@pytest.mark.parametrize("refusal, status, fetches", [
    ("wrong key", 400, True),
    ("tampered", 400, True),
    ("v1 signature said to be v2", 400, True),
    ("host suffix", 400, False),
    ("another host", 400, False),
    ("http", 400, False),
    ("unknown topic", 403, False),
    ("stale", 400, False),
    ("future", 400, False),
    ("header mismatch", 400, False),
])
def test_refused_messages_get_a_4xx_and_change_nothing(client, sns, sent, refusal, status, fetches):
    _, _, rows = sent
    pem_path = sns.certificate_url().removeprefix("https://sns.us-east-1.amazonaws.com")
    messages = {
        "wrong key": lambda: notification(sns, bounce(rows[0]), key=new_key()),
        "tampered": lambda: _tampered(sns, rows[0]),
        "v1 signature said to be v2": lambda: {**notification(sns, bounce(rows[0])), "SignatureVersion": "2"},
        "host suffix": lambda: notification(
            sns, bounce(rows[0]), cert_url=f"https://sns.us-east-1.amazonaws.com.evil.example{pem_path}"
        ),
        "another host": lambda: notification(sns, bounce(rows[0]), cert_url="https://example.com/cert.pem"),
        "http": lambda: notification(sns, bounce(rows[0]), cert_url=f"http://sns.us-east-1.amazonaws.com{pem_path}"),
        "unknown topic": lambda: notification(sns, bounce(rows[0]), topic=TOPIC.replace("ses-feedback", "other")),
        "stale": lambda: notification(sns, bounce(rows[0]), at=datetime.now(UTC) - timedelta(hours=2)),
        "future": lambda: notification(sns, bounce(rows[0]), at=datetime.now(UTC) + timedelta(minutes=10)),
        "header mismatch": lambda: notification(sns, bounce(rows[0])),
    }
    before = state()
    message_type = "SubscriptionConfirmation" if refusal == "header mismatch" else None
    answer = post(client, messages[refusal](), message_type)
    assert answer.status_code == status, answer.content
    assert state() == before
    assert bool(sns.paths) == fetches


def test_a_certificate_host_whose_tls_certificate_does_not_name_it_is_not_trusted(client, sns, sent):
    """The stand-in's TLS certificate names sns.us-east-1 only: asked for sns.eu-west-1, the app refuses
    the connection (502, SNS tries again later) although SNS_CERTIFICATE_CONNECT_TO sends it there."""
    _, _, rows = sent
    before = state()
    cert_url = sns.certificate_url().replace("us-east-1", "eu-west-1")
    assert post(client, notification(sns, bounce(rows[0]), cert_url=cert_url)).status_code == 502
    assert state() == before and sns.paths == []


def test_the_test_ca_is_trusted_only_through_sns_ca_bundle(client, sns, sent, settings):
    _, _, rows = sent
    settings.SNS_CA_BUNDLE = ""
    before = state()
    assert post(client, notification(sns, bounce(rows[0]))).status_code == 502
    assert state() == before


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"Type": "Notification"}'])
def test_malformed_bodies_are_400(client, sns, body):
    answer = client.post(URL, data=body, content_type="text/plain", headers={"x-amz-sns-message-type": "Notification"})
    assert answer.status_code == 400
    assert not FeedbackEvent.objects.exists()


def test_a_get_is_not_allowed(client):
    assert client.get(URL).status_code == 405
