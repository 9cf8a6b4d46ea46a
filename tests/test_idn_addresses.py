"""Internationalised addresses: an IDN domain goes out in its IDNA form; a Unicode local part
goes only where the relay offers SMTPUTF8; one odd address never takes its window down."""

import email
import email.policy
import json
import urllib.request

import boto3
import pytest

from delivery.mime import PreparedMessage, Recipient, shared_headers
from newsletters.rendering import render_issue
from subscribers.models import OwedEmail, Subscriber
from subscribers.services import normalize_email, subscriber_ensure
from transports import FAILED, SENT, Outgoing
from transports.ses import NO_SMTPUTF8 as SES_NO_SMTPUTF8
from transports.ses import SESTransport
from transports.smtp import NO_SMTPUTF8, SMTPTransport

from .smtp_sink import SmtpSink
from .test_send_ses import _raw_messages, aws_env, moto_server  # noqa: F401 (fixtures)

IDN, IDN_ASCII, UNICODE_LOCAL = "idn@exämple.org", "idn@xn--exmple-cua.org", "dũng@example.org"
ASCII_FANS = ["a@fans.example", "b@fans.example", "c@fans.example", "d@fans.example"]
RAW = (
    b"From: zine@sender.example\r\nTo: someone\r\nSubject: Hello\r\nMessage-ID: <m@sender.example>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello.\r\n"
)


@pytest.fixture
def sink_without_smtputf8():
    sink = SmtpSink(smtputf8=False).start()
    yield sink
    sink.stop()


@pytest.fixture
def build_window(ready_issue):
    """Messages to `addresses`, built as the engine and send_test build them, each with a display name."""
    issue, _ = ready_issue(n=1)
    html, text = render_issue(issue, "free")
    prepared = PreparedMessage(issue=issue, headers=shared_headers(issue), html_body=html, text_body=text)

    def build(addresses):
        recipients = [Recipient(i + 1, address, f"Fän {i}", i + 1) for i, address in enumerate(addresses)]
        return [prepared.build(recipient) for recipient in recipients]

    return build


def mixed_window():
    """Two ASCII fans, the IDN domain, two more, the Unicode local part, and the last ASCII fans."""
    return [ASCII_FANS[0], ASCII_FANS[1], IDN, ASCII_FANS[2], UNICODE_LOCAL, ASCII_FANS[3]]


def send(sink, messages):
    transport = SMTPTransport(host="127.0.0.1", port=sink.port)
    try:
        return transport.send(messages)
    finally:
        transport.close()


def assert_each_ascii_fan_got_exactly_one(sink):
    for address in ASCII_FANS:
        [received] = sink.to(address)
        assert received.message["To"].addresses[0].addr_spec == address


def assert_the_idn_fan_got_it_at_the_punycode_domain(sink):
    [received] = sink.to(IDN_ASCII)
    assert received.rcpt_tos == [IDN_ASCII]
    parsed = email.message_from_bytes(received.raw, policy=email.policy.default)
    assert not parsed.defects
    [to] = parsed["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Fän 2", IDN_ASCII)
    assert "Fän 2" in parsed.get_body(("plain",)).get_content()


@pytest.mark.django_db
@pytest.mark.parametrize("pipelining", [True, False])
def test_on_a_relay_without_smtputf8_only_the_unicode_local_part_fails(
    sink_without_smtputf8, build_window, pipelining
):
    sink = sink_without_smtputf8
    sink.handler.pipelining = pipelining
    results = send(sink, build_window(mixed_window()))

    assert [r.outcome for r in results] == [SENT, SENT, SENT, SENT, FAILED, SENT]
    assert results[4].error == NO_SMTPUTF8
    assert "non-ASCII characters before the @" in results[4].error
    assert_each_ascii_fan_got_exactly_one(sink)
    assert_the_idn_fan_got_it_at_the_punycode_domain(sink)
    assert len(sink.messages) == 5
    assert not any(received.smtputf8 for received in sink.messages)


@pytest.mark.django_db
@pytest.mark.parametrize("pipelining", [True, False])
def test_on_a_relay_with_smtputf8_the_unicode_local_part_goes_too(smtp_sink, build_window, pipelining):
    smtp_sink.handler.pipelining = pipelining
    results = send(smtp_sink, build_window(mixed_window()))

    assert [r.outcome for r in results] == [SENT] * 6
    assert_each_ascii_fan_got_exactly_one(smtp_sink)
    assert_the_idn_fan_got_it_at_the_punycode_domain(smtp_sink)
    [received] = smtp_sink.to(UNICODE_LOCAL)
    assert received.smtputf8 and received.rcpt_tos == [UNICODE_LOCAL]
    assert f"<{UNICODE_LOCAL}>".encode() in received.raw  # an RFC 6532 header, the name still encoded
    assert len(smtp_sink.messages) == 6
    # Only the message that needs it asks for SMTPUTF8.
    assert [r.smtputf8 for r in smtp_sink.messages] == [False, False, False, False, True, False]


def test_a_unicode_domain_and_local_part_together_go_with_smtputf8(smtp_sink):
    message = Outgoing(1, "zine@sender.example", "dũng@exämple.org", "<m1@sender.example>", RAW)
    [result] = send(smtp_sink, [message])
    assert result.outcome == SENT
    [received] = smtp_sink.messages
    assert received.rcpt_tos == ["dũng@xn--exmple-cua.org"]


def test_an_address_no_relay_can_carry_fails_alone(smtp_sink):
    messages = [
        Outgoing(i, "zine@sender.example", to, f"<m{i}@sender.example>", RAW)
        for i, to in enumerate(["a@fans.example", "bad@exa\u200bmple..org", "b@fans.example"])
    ]
    results = send(smtp_sink, messages)
    assert [result.outcome for result in results] == [SENT, FAILED, SENT]
    assert "IDNA" in results[1].error
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["a@fans.example"], ["b@fans.example"]]


def test_a_message_that_cannot_be_encoded_fails_alone_and_the_next_one_goes(smtp_sink):
    broken = Outgoing(2, "zine@sender.example", "b@fans.example", "<m2@sender.example>", "not bytes")
    messages = [
        Outgoing(1, "zine@sender.example", "a@fans.example", "<m1@sender.example>", RAW),
        broken,
        Outgoing(3, "zine@sender.example", "c@fans.example", "<m3@sender.example>", RAW),
    ]
    results = send(smtp_sink, messages)
    assert [result.outcome for result in results] == [SENT, FAILED, SENT]
    assert results[1].error
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["a@fans.example"], ["c@fans.example"]]


@pytest.mark.django_db
def test_through_ses_the_idn_domain_goes_as_punycode_and_the_unicode_local_part_fails_without_a_call(
    moto_server, build_window  # noqa: F811 (fixture)
):
    boto3.client("sesv2", region_name="us-east-1", endpoint_url=moto_server).create_email_identity(
        EmailIdentity="sender.example"
    )
    transport = SESTransport(region="us-east-1")
    try:
        results = transport.send(build_window(mixed_window()))
    finally:
        transport.close()

    assert [r.outcome for r in results] == [SENT, SENT, SENT, SENT, FAILED, SENT]
    assert results[4].error == SES_NO_SMTPUTF8
    raw_messages = _raw_messages(json.load(urllib.request.urlopen(f"{moto_server}/moto-api/data.json")))
    assert len(raw_messages) == 5  # the failed one made no call
    for address in [*ASCII_FANS, IDN_ASCII]:
        assert sum(f"<{address}>" in raw for raw in raw_messages) == 1
    assert not any(UNICODE_LOCAL in raw for raw in raw_messages)


def test_addresses_are_stored_with_their_domain_in_idna_form():
    assert normalize_email(" idn@Exämple.org ") == IDN_ASCII
    assert normalize_email("plain@Example.org") == "plain@Example.org"  # ASCII: as typed, as before
    assert normalize_email(UNICODE_LOCAL) == UNICODE_LOCAL
    assert normalize_email("bad@exa\u200bmple..org") == "bad@exa\u200bmple..org"  # cannot convert: as it was


@pytest.mark.django_db
def test_the_unicode_and_the_punycode_spelling_are_one_subscriber():
    first = subscriber_ensure(email="idn@EXÄMPLE.org")
    assert first.email == IDN_ASCII
    assert subscriber_ensure(email=IDN) == first
    assert subscriber_ensure(email=IDN_ASCII) == first
    assert Subscriber.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db
def test_a_signup_with_an_idn_domain_is_stored_in_idna_form(make_creator, client, fresh_rate_limits):
    make_creator("zine")
    response = client.post("/zine/subscribe", {"email": "idn@Exämple.org", "form": "page"})
    assert response.status_code == 200
    assert "Check your inbox" in response.content.decode()
    assert list(Subscriber.objects.values_list("email", flat=True)) == [IDN_ASCII]
    assert OwedEmail.objects.get().subscription.subscriber.email == IDN_ASCII


def test_through_ses_a_message_that_raises_fails_alone(moto_server):  # noqa: F811 (fixture)
    boto3.client("sesv2", region_name="us-east-1", endpoint_url=moto_server).create_email_identity(
        EmailIdentity="sender.example"
    )
    # moto reads the To header, so each message names its fan there.
    raw_a = RAW.replace(b"To: someone", b"To: a@fans.example")
    raw_c = RAW.replace(b"To: someone", b"To: c@fans.example")
    messages = [
        Outgoing(1, "zine@sender.example", "a@fans.example", "<m1@sender.example>", raw_a),
        Outgoing(2, "zine@sender.example", None, "<m2@sender.example>", raw_a),  # a row with no address
        Outgoing(3, "zine@sender.example", "c@fans.example", "<m3@sender.example>", raw_c),
    ]
    transport = SESTransport(region="us-east-1")
    try:
        results = transport.send(messages)
    finally:
        transport.close()
    assert [r.outcome for r in results] == [SENT, FAILED, SENT]
    assert results[1].error


@pytest.mark.django_db
def test_every_writer_stores_the_idna_spelling_and_a_suppression_matches_either_spelling(ready_issue, monkeypatch):
    """The admin and the shell write through the models: a suppression typed with the Unicode
    domain still keeps mail from the fan stored with the punycode one."""
    from delivery import engine
    from delivery.models import Delivery
    from subscribers.models import Suppression

    monkeypatch.setattr(engine.chains, "kick", lambda *a, **k: None)
    assert Subscriber.objects.create(email="other@Exämple.org").email == "other@xn--exmple-cua.org"
    issue, subscriptions = ready_issue(n=3)
    Subscriber.objects.filter(pk=subscriptions[0].subscriber_id).update(email=IDN_ASCII)
    Suppression.objects.create(email="IDN@EXÄMPLE.org")
    assert Suppression.objects.get().email == "IDN@xn--exmple-cua.org"
    assert engine.start_send(issue.pk) == 2
    assert not Delivery.objects.filter(issue=issue, subscriber_id=subscriptions[0].subscriber_id).exists()


@pytest.mark.django_db
def test_addresses_stored_before_the_change_get_their_idna_spelling():
    import importlib

    from django.apps import apps

    from subscribers.models import Suppression

    migration = importlib.import_module("subscribers.migrations.0004_idna_domains")
    alone = Subscriber.objects.create(email="alone@example.org")
    twin = Subscriber.objects.create(email="twin@xn--exmple-cua.org")
    twin_old = Subscriber.objects.create(email="placeholder@example.org")
    kept = Suppression.objects.create(email="gone@xn--exmple-cua.org")
    dupe = Suppression.objects.create(email="placeholder@example.org")
    unique = Suppression.objects.create(email="placeholder2@example.org")
    # Rows written before: straight to the table, past the models' normalisation.
    Subscriber.objects.filter(pk=alone.pk).update(email="alone@exämple.org")
    Subscriber.objects.filter(pk=twin_old.pk).update(email="Twin@Exämple.org")
    Suppression.objects.filter(pk=dupe.pk).update(email="gone@exämple.org")
    Suppression.objects.filter(pk=unique.pk).update(email="only@exämple.org")
    migration.forwards(apps, None)
    assert Subscriber.objects.get(pk=alone.pk).email == "alone@xn--exmple-cua.org"
    assert Subscriber.objects.get(pk=twin.pk).email == "twin@xn--exmple-cua.org"
    assert Subscriber.objects.get(pk=twin_old.pk).email == "Twin@Exämple.org"  # taken: left, the send converts it
    assert set(Suppression.objects.values_list("email", flat=True)) == {kept.email, "only@xn--exmple-cua.org"}


@pytest.mark.django_db
def test_a_sender_with_an_idn_domain_goes_out_in_idna_form(ready_issue, smtp_sink, transport_settings):
    """The creator types the sender and reply-to with their Unicode domain: the headers and the
    envelope carry the IDNA spelling, which every relay takes."""
    from delivery.engine import send_test

    transport_settings(smtp_sink.url)
    issue, _ = ready_issue(n=1)
    newsletter = issue.newsletter
    newsletter.sender_email, newsletter.reply_to = "letters@tạpchí.vn", "reply@Tạpchí.vn"
    newsletter.full_clean()
    newsletter.save()
    assert newsletter.sender_email == "letters@xn--tpch-ypa4376b.vn"
    assert newsletter.reply_to == "reply@xn--tpch-ypa4376b.vn"
    send_test(issue.pk, "creator@fans.example")
    [received] = smtp_sink.messages
    assert received.mail_from == "letters@xn--tpch-ypa4376b.vn"
    assert received.message["From"].addresses[0].addr_spec == "letters@xn--tpch-ypa4376b.vn"
    assert received.message["Reply-To"].addresses[0].addr_spec == "reply@xn--tpch-ypa4376b.vn"
    assert "mailto:reply@xn--tpch-ypa4376b.vn" in received.message["List-Unsubscribe"]
