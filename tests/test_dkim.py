"""DKIM: what the SMTP transport hands to the relay carries a signature that dkimpy verifies."""

import logging

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.mail import EmailMessage

from delivery.mime import PreparedMessage, Recipient, shared_headers
from newsletters.rendering import render_issue
from transports import SENT, Outgoing, get_transport
from transports import dkim as oa_dkim

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def key_pem():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture
def dkim_settings(transport_settings, smtp_sink, key_pem):
    def use(domain="sender.example", **more):
        values = {"DKIM_SELECTOR": "oa2026", "DKIM_DOMAIN": domain, "DKIM_PRIVATE_KEY": key_pem,
                  "DKIM_PRIVATE_KEY_FILE": "", **more}
        return transport_settings(smtp_sink.url, **values)

    return use


def dns_for(key_pem):
    record = oa_dkim.public_key_record(key_pem.encode()).encode()

    def dnsfunc(name, timeout=5):
        return record if name == b"oa2026._domainkey.sender.example." else None

    return dnsfunc


def built(issue):
    html, text = render_issue(issue, "free")
    prepared = PreparedMessage(issue=issue, headers=shared_headers(issue), html_body=html, text_body=text)
    return prepared.build(Recipient(42, "ann@fans.example", "Ann Nguyễn", 7))


def test_a_bulk_message_is_signed_and_verifies(dkim_settings, smtp_sink, ready_issue, key_pem):
    dkim_settings()
    issue, _ = ready_issue()
    [result] = get_transport().send([built(issue)])
    assert result.outcome == SENT, result.error
    [received] = smtp_sink.to("ann@fans.example")
    raw = received.raw
    assert raw.startswith(b"DKIM-Signature: ")
    signature = received.message["DKIM-Signature"]
    tags = dict(part.strip().split("=", 1) for part in "".join(signature.split()).split(";") if part)
    assert tags["a"] == "rsa-sha256" and tags["c"] == "relaxed/relaxed"
    assert tags["d"] == "sender.example" and tags["s"] == "oa2026"
    assert tags["h"].split(":") == ["from", "to", "subject", "date", "message-id", "list-unsubscribe",
                                    "list-unsubscribe-post", "mime-version", "content-type", "from"]
    dnsfunc = dns_for(key_pem)
    assert dkim.verify(raw, dnsfunc=dnsfunc)
    # A relay on the way adds its trace header on top: still valid.
    assert dkim.verify(b"Received: from relay.example by mx.fans.example; Thu, 3 Dec 2026 10:00:00 +0000\r\n"
                       + raw, dnsfunc=dnsfunc)
    # Any change to a signed header breaks it.
    changed = raw.replace(b"Subject: Issue one", b"Subject: Issue 0ne")
    assert changed != raw and not dkim.verify(changed, dnsfunc=dnsfunc)
    # So does a change to the body.
    changed = raw.replace(b"1 Letter Lane", b"2 Letter Lane")
    assert changed != raw and not dkim.verify(changed, dnsfunc=dnsfunc)


def test_transactional_mail_is_signed_too(dkim_settings, smtp_sink, key_pem):
    """Confirmations and login codes go through the same transport (transports/backend.py)."""
    from transports.backend import TransportEmailBackend

    dkim_settings()
    message = EmailMessage("Confirm your subscription", "Click the link.\n", "Zine <zine@news.sender.example>",
                           ["bo@fans.example"])
    assert TransportEmailBackend().send_messages([message]) == 1
    [received] = smtp_sink.to("bo@fans.example")
    assert received.raw.startswith(b"DKIM-Signature: ")  # a subdomain of DKIM_DOMAIN is signed
    assert dkim.verify(received.raw, dnsfunc=dns_for(key_pem))


def test_a_from_domain_outside_dkim_domain_goes_unsigned_and_is_logged_once(dkim_settings, smtp_sink, caplog):
    dkim_settings(domain="other.example")
    raw = b"From: zine@sender.example\r\nTo: cy@fans.example\r\nSubject: hi\r\n\r\nhello\r\n"
    outgoing = [Outgoing(i, "zine@sender.example", "cy@fans.example", f"<m{i}@sender.example>", raw)
                for i in range(3)]
    with caplog.at_level(logging.WARNING, logger="transports.dkim"):
        results = get_transport().send(outgoing)
    assert [r.outcome for r in results] == [SENT] * 3
    assert all(not m.raw.startswith(b"DKIM-Signature") for m in smtp_sink.to("cy@fans.example"))
    assert len([r for r in caplog.records if "not signing" in r.getMessage()]) == 1
    # notsender.example is not below sender.example either.
    assert not oa_dkim.within("notsender.example", "sender.example")
    assert oa_dkim.within("a.b.sender.example", "sender.example")


def test_without_dkim_settings_nothing_changes(transport_settings, smtp_sink):
    transport_settings(smtp_sink.url, DKIM_SELECTOR="", DKIM_DOMAIN="", DKIM_PRIVATE_KEY="", DKIM_PRIVATE_KEY_FILE="")
    raw = b"From: zine@sender.example\r\nTo: di@fans.example\r\nSubject: hi\r\n\r\nhello\r\n"
    [result] = get_transport().send([Outgoing(1, "zine@sender.example", "di@fans.example", "<m@x>", raw)])
    assert result.outcome == SENT
    assert smtp_sink.to("di@fans.example")[0].raw == raw


def test_the_key_file_is_read_and_parsed_once(dkim_settings, key_pem, tmp_path):
    path = tmp_path / "dkim.pem"
    path.write_text(key_pem)
    dkim_settings(DKIM_PRIVATE_KEY="", DKIM_PRIVATE_KEY_FILE=str(path))
    first = get_transport().signer
    assert first is not None and first is oa_dkim.signer()  # one Signer (and one loaded key) per process
    raw = b"From: a@sender.example\r\nSubject: x\r\n\r\nbody\r\n"
    assert dkim.verify(first.sign(raw), dnsfunc=dns_for(key_pem))


def test_a_bad_key_is_a_clear_error(transport_settings, smtp_sink):
    transport_settings(smtp_sink.url, DKIM_SELECTOR="s", DKIM_DOMAIN="sender.example",
                       DKIM_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(oa_dkim.DKIMConfigError):
        get_transport()


@pytest.mark.parametrize("body", [
    b"", b"\r\n", b"\r\n\r\n", b"a", b"a \r\n", b"a\t \t\r\nb  c\r\n\r\n\r\n", b" \r\n \r\n", b"x\ty\r\n",
    b"trailing  ", b"  lead\r\n\tmore\r\n", b"=20\r\n  \r\n", b"a \t \r\n\r\n \r\n",
])
def test_the_fast_body_canonicalization_is_dkimpys(body):
    from dkim.canonicalization import Relaxed

    assert oa_dkim.relaxed_body(body) == Relaxed.canonicalize_body(body)


def test_the_fast_body_canonicalization_is_dkimpys_for_any_text():
    from dkim.canonicalization import Relaxed
    from hypothesis import given, settings as hsettings, strategies as st

    pieces = st.lists(st.sampled_from([b"a", b"b", b" ", b"\t", b"\r\n", b"=", b"\xc3\xa9"]), max_size=40)

    @hsettings(max_examples=300, deadline=None)
    @given(pieces)
    def check(parts):
        body = b"".join(parts)
        assert oa_dkim.relaxed_body(body) == Relaxed.canonicalize_body(body)

    check()
