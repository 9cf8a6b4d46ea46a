"""Internationalised addresses: an IDN domain goes out in its IDNA form; a Unicode local part
goes only where the relay offers SMTPUTF8; one odd address never takes its window down."""

import pytest

from newsletters.transports import FAILED, SENT, Outgoing
from newsletters.transports.smtp import NO_SMTPUTF8, SMTPTransport
from subscribers.models import Subscriber
from subscribers.services import normalize_email

RAW = (
    b"From: zine@sender.example\r\nTo: someone\r\nSubject: Hello\r\nMessage-ID: <m@sender.example>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello.\r\n"
)


def window(*recipients):
    return [Outgoing(i, "zine@sender.example", to, f"<m{i}@sender.example>", RAW) for i, to in enumerate(recipients)]


def test_a_window_with_an_idn_domain_and_a_unicode_local_part_on_a_relay_without_smtputf8(smtp_sink):
    transport = SMTPTransport(host="127.0.0.1", port=smtp_sink.port)
    transport._connect_original = transport._connect

    def connect_without_smtputf8():
        connection = transport._connect_original()
        connection.esmtp_features.pop("smtputf8", None)  # as a relay that does not offer it
        return connection

    transport._connect = connect_without_smtputf8
    results = transport.send(window("a@fans.example", "idn@exämple.org", "dũng@example.org", "b@fans.example"))
    outcomes = [result.outcome for result in results]
    assert outcomes == [SENT, SENT, FAILED, SENT]
    assert results[2].error == NO_SMTPUTF8
    assert len(smtp_sink.to("idn@xn--exmple-cua.org")) == 1
    assert len(smtp_sink.to("a@fans.example")) == 1 and len(smtp_sink.to("b@fans.example")) == 1
    assert len(smtp_sink.messages) == 3
    transport.close()


def test_a_unicode_local_part_goes_with_smtputf8_when_the_relay_offers_it(smtp_sink):
    transport = SMTPTransport(host="127.0.0.1", port=smtp_sink.port)
    [result] = transport.send(window("dũng@exämple.org"))
    assert result.outcome == SENT
    assert len(smtp_sink.to("dũng@xn--exmple-cua.org")) == 1
    transport.close()


def test_an_address_no_relay_can_carry_fails_alone(smtp_sink):
    transport = SMTPTransport(host="127.0.0.1", port=smtp_sink.port)
    results = transport.send(window("a@fans.example", "bad@exa\u200bmple..org", "b@fans.example"))
    assert [result.outcome for result in results] == [SENT, FAILED, SENT]
    assert results[1].error
    transport.close()


def test_addresses_are_stored_with_their_domain_in_idna_form():
    assert normalize_email(" idn@Exämple.org ") == "idn@xn--exmple-cua.org"
    assert normalize_email("plain@Example.org") == "plain@Example.org"


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_signup_with_an_idn_domain_is_stored_in_idna_form(make_creator, client, fresh_rate_limits):
    make_creator("zine")
    response = client.post("/zine/subscribe", {"email": "idn@exämple.org", "form": "page"})
    assert response.status_code in (200, 302)
    assert Subscriber.objects.filter(email="idn@xn--exmple-cua.org").exists()
    assert not Subscriber.objects.filter(email="idn@exämple.org").exists()
