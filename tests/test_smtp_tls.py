"""SMTP to a relay that wants TLS and a login: STARTTLS, implicit TLS, and a certificate it must trust."""

import datetime
import ipaddress
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from transports import FAILED, HALTED, SENT, THROTTLED, Outgoing, get_transport

from .smtp_sink import SmtpSink

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

MESSAGE = Outgoing(1, "news@sender.example", "fan@fans.example", "<m1@sender.example>",
                   b"From: news@sender.example\r\nTo: fan@fans.example\r\nSubject: tls\r\n\r\nhello\r\n")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (certificate path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture
def tls_sink(certificate, monkeypatch):
    sinks = []

    def start(tls, credentials=("relay-user", "s3cret")):
        sink = SmtpSink(tls=tls, certificate=certificate, credentials=credentials).start()
        sinks.append(sink)
        return sink

    # Operators with a private CA do the same: OpenSSL reads SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    yield start
    for sink in sinks:
        sink.stop()


@pytest.mark.parametrize("scheme, tls", [("smtp", "starttls"), ("smtps", "ssl")])
def test_tls_and_login(tls_sink, transport_settings, scheme, tls):
    sink = tls_sink(tls)
    query = "?tls=starttls" if tls == "starttls" else ""
    transport_settings(f"{scheme}://relay-user:s3cret@127.0.0.1:{sink.port}{query}")
    [result] = get_transport().send([MESSAGE])
    assert result.outcome == SENT, result.error
    assert sink.to("fan@fans.example")[0].message["Subject"] == "tls"


def test_a_wrong_password_is_not_a_silent_loss(tls_sink, transport_settings):
    sink = tls_sink("starttls")
    transport_settings(f"smtp://relay-user:wrong@127.0.0.1:{sink.port}?tls=starttls&timeout=2")
    [result] = get_transport().send([MESSAGE])
    # Kept for later, when the operator has fixed the password: the send stops itself with the
    # reason (tests/test_send_pause.py), and the row spends nothing while it waits.
    assert result.outcome == HALTED
    assert "535" in result.error
    assert not sink.messages


def test_an_untrusted_certificate_is_refused(tls_sink, transport_settings, monkeypatch):
    sink = tls_sink("starttls")
    monkeypatch.delenv("SSL_CERT_FILE")
    transport_settings(f"smtp://relay-user:s3cret@127.0.0.1:{sink.port}?tls=starttls")
    [result] = get_transport().send([MESSAGE])
    assert result.outcome in (THROTTLED, FAILED) and "CERTIFICATE_VERIFY_FAILED" in result.error
    assert not sink.messages


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_refused_recipient_fails_alone_and_the_connection_goes_on(smtp_sink, transport_settings, pipelining):
    smtp_sink.handler.pipelining = pipelining
    smtp_sink.handler.refused_recipients = {"gone@fans.example": "550 5.1.1 No such user"}
    transport_settings(smtp_sink.url)
    messages = [
        MESSAGE._replace(delivery_id=1, recipient="first@fans.example"),
        MESSAGE._replace(delivery_id=2, recipient="gone@fans.example"),
        MESSAGE._replace(delivery_id=3, recipient="third@fans.example"),
    ]
    results = get_transport().send(messages)
    assert [r.outcome for r in results] == [SENT, FAILED, SENT]
    assert "550 5.1.1 No such user" in results[1].error
    assert sorted(m.rcpt_tos for m in smtp_sink.messages) == [["first@fans.example"], ["third@fans.example"]]


def test_an_address_that_could_smuggle_commands_is_refused(smtp_sink, transport_settings):
    transport_settings(smtp_sink.url)
    [result] = get_transport().send([MESSAGE._replace(recipient="a@b.example>\r\nRCPT TO:<victim@x.example")])
    assert result.outcome == FAILED
    assert not smtp_sink.messages


def test_a_4xx_at_rcpt_speaks_for_that_recipient_only(smtp_sink, transport_settings):
    """Greylisting one address is not the relay throttling: that row retries on its own, the send goes on."""
    from transports import RETRY

    smtp_sink.handler.refused_recipients = {"grey@fans.example": "451 4.7.1 Greylisted, try again later"}
    transport_settings(smtp_sink.url)
    results = get_transport().send([
        MESSAGE._replace(delivery_id=1, recipient="grey@fans.example"),
        MESSAGE._replace(delivery_id=2, recipient="next@fans.example"),
    ])
    assert [result.outcome for result in results] == [RETRY, SENT]
    smtp_sink.refuse("451 4.3.0 Relay over its hourly quota")
    [result] = get_transport().send([MESSAGE._replace(delivery_id=3, recipient="later@fans.example")])
    assert result.outcome == THROTTLED


def test_a_group_goes_out_side_by_side_and_each_answer_speaks_for_its_own_message(smtp_sink, transport_settings):
    """A group is one message per connection, all on the wire at once. A refusal at the end of
    DATA, a connection that drops before answering, and a greylisted recipient each touch their
    own message only; the next group reuses the live connections and replaces the dropped one."""
    from transports import RETRY, UNKNOWN

    smtp_sink.handler.slow_seconds = 0.5
    smtp_sink.handler.data_replies = {"spam@fans.example": "554 5.7.1 Looks like spam"}
    smtp_sink.handler.hang_up_after_data = {"lost@fans.example"}
    smtp_sink.handler.refused_recipients = {"grey@fans.example": "450 4.2.0 Mailbox busy"}
    transport_settings(smtp_sink.url + "?connections=6")
    transport = get_transport()
    assert transport.in_flight == 6
    fans = ["a", "spam", "lost", "grey", "b", "c"]
    started = time.monotonic()
    results = transport.send([MESSAGE._replace(delivery_id=i, recipient=f"{fan}@fans.example")
                              for i, fan in enumerate(fans)])
    elapsed = time.monotonic() - started
    assert [r.outcome for r in results] == [SENT, FAILED, UNKNOWN, RETRY, SENT, SENT]
    assert [r.delivery_id for r in results] == list(range(6))
    assert "554 5.7.1" in results[1].error and "450 4.2.0" in results[3].error
    assert elapsed < 1.5  # five slow answers of 0.5 s side by side, not one after another (2.5 s)
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == ["a@fans.example", "b@fans.example",
                                                                  "c@fans.example"]
    connections = set(smtp_sink.handler.sessions)
    smtp_sink.handler.slow_seconds = 0
    again = transport.send([MESSAGE._replace(delivery_id=10 + i, recipient=f"next{i}@fans.example")
                            for i in range(6)])
    assert [r.outcome for r in again] == [SENT] * 6
    reused = set(smtp_sink.handler.sessions) - connections
    assert len(reused) == 1  # only the dropped connection was opened anew
