"""manage.py check_domain against a tiny DNS server on loopback (dnspython's own messages over UDP)."""

import io
import socket
import threading

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import call_command

from transports import dkim

from .test_dkim import key_pem  # noqa: F401  (fixture)


class TinyDNS:
    """Answers TXT and CNAME questions from `zone` ({(name, type): [values]}); NXDOMAIN for the rest."""

    def __init__(self, zone):
        self.zone = {(name.lower().rstrip("."), kind): values for (name, kind), values in zone.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self):
        while not self.stopping:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().lower().rstrip(".")
            kind = dns.rdatatype.to_text(question.rdtype)
            values = self.zone.get((name, kind))
            if values:
                if kind == "TXT":  # long values in 255-byte strings, as DNS carries them
                    values = [" ".join('"%s"' % v[i:i + 255] for i in range(0, len(v), 255)) for v in values]
                response.answer.append(dns.rrset.from_text_list(question.name, 300, "IN", kind, values))
            elif not any(key[0] == name for key in self.zone):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.thread.join()
        self.sock.close()


@pytest.fixture
def smtp_dkim(settings, key_pem):
    settings.EMAIL_TRANSPORT = {"transport": "smtp", "host": "relay.example", "port": 587}
    settings.DKIM_SELECTOR, settings.DKIM_DOMAIN = "oa2026", "sender.example"
    settings.DKIM_PRIVATE_KEY, settings.DKIM_PRIVATE_KEY_FILE = key_pem, ""
    return dkim.public_key_record(key_pem.encode())


def run(*args):
    out = io.StringIO()
    try:
        call_command("check_domain", *args, stdout=out)
        code = 0
    except SystemExit as exit:
        code = exit.code
    return code, out.getvalue()


def test_all_present_and_aligned(smtp_dkim):
    zone = {
        ("sender.example", "TXT"): ["v=spf1 a:relay.example ~all", "google-site-verification=x"],
        ("oa2026._domainkey.sender.example", "TXT"): [smtp_dkim],
        ("_dmarc.sender.example", "TXT"): ["v=DMARC1; p=none; rua=mailto:d@sender.example"],
    }
    with TinyDNS(zone) as server:
        code, out = run("sender.example", "--resolver", server.address)
    assert code == 0, out
    assert out.count("-> present") == 3
    assert "v=spf1 a:relay.example ~all" in out
    assert "TXT oa2026._domainkey.sender.example" in out and smtp_dkim in out
    assert "v=DMARC1; p=none; rua=mailto:dmarc-reports@sender.example" in out
    assert "the From domain itself: aligned" in out and "Ready." in out


def test_missing_and_different_records_fail(smtp_dkim, key_pem):
    other = dkim.public_key_record(rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    zone = {
        ("sender.example", "TXT"): ["v=spf1 include:_spf.elsewhere.example -all"],
        ("oa2026._domainkey.sender.example", "TXT"): [other],
    }
    with TinyDNS(zone) as server:
        code, out = run("sender.example", "--resolver", server.address)
    assert code == 1
    assert "SPF: TXT sender.example" in out and "-> different: found 'v=spf1 include:_spf.elsewhere.example -all'" in out
    assert "a record with another public key" in out
    assert "DMARC: TXT _dmarc.sender.example" in out and "-> missing" in out
    assert "Not ready: SPF different; DKIM different; DMARC missing" in out


def test_a_subdomain_is_signed_by_the_parent_and_aligns_relaxed(smtp_dkim):
    zone = {
        ("news.sender.example", "TXT"): ["v=spf1 a:relay.example ~all"],
        ("oa2026._domainkey.sender.example", "TXT"): [smtp_dkim],
        ("_dmarc.news.sender.example", "TXT"): ["v=DMARC1; p=reject"],
    }
    with TinyDNS(zone) as server:
        code, out = run("news.sender.example", "--resolver", server.address)
    assert code == 0, out
    assert "relaxed alignment" in out


def test_a_domain_outside_dkim_domain_is_not_signed(smtp_dkim):
    with TinyDNS({}) as server:
        code, out = run("other.example", "--resolver", server.address)
    assert code == 1
    assert "is NOT signed" in out and "DKIM does not sign this domain" in out


def test_records_are_printed_when_dns_does_not_answer(smtp_dkim):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # takes the question, never answers
    try:
        code, out = run("sender.example", "--resolver", "127.0.0.1:%d" % silent.getsockname()[1], "--timeout", "0.5")
    finally:
        silent.close()
    assert code == 0
    assert smtp_dkim in out and "DNS did not answer" in out and "-> " not in out


def test_ses_wants_amazonses_spf_and_easy_dkim(settings, monkeypatch):
    settings.EMAIL_TRANSPORT = {"transport": "ses", "region": "us-east-1", "configuration_set": ""}
    from transports import checks

    monkeypatch.setattr(checks, "ses_client", lambda region: object())
    monkeypatch.setattr(checks, "ses_identity", lambda client, identity: {
        "DkimAttributes": {"Tokens": ["tok1", "tok2", "tok3"]}})
    zone = {
        ("sender.example", "TXT"): ["v=spf1 include:amazonses.com ~all"],
        ("tok1._domainkey.sender.example", "CNAME"): ["tok1.dkim.amazonses.com."],
        ("tok2._domainkey.sender.example", "CNAME"): ["tok2.dkim.amazonses.com."],
        ("_dmarc.sender.example", "TXT"): ["v=DMARC1; p=none"],
    }
    with TinyDNS(zone) as server:
        code, out = run("sender.example", "--resolver", server.address)
    assert "v=spf1 include:amazonses.com ~all" in out
    assert "Easy DKIM" in out and "get-email-identity" in out
    assert "CNAME tok3._domainkey.sender.example" in out
    assert code == 1 and "Not ready: DKIM missing" in out  # tok3 is not published
