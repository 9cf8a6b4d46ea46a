"""DKIM signatures (RFC 6376, rsa-sha256, relaxed/relaxed) for the messages the SMTP transport sends.

dkimpy does the canonicalization, header selection, header hashing and folding; the RSA step
is OpenSSL's (the `cryptography` package) with the key parsed once per process: dkimpy's own
`sign()` parses the PEM key for every message and signs in pure Python (about 10 ms a message
on this machine, against about 0.4 ms). Messages are checked with `dkim.verify()` in the tests.

Settings: DKIM_SELECTOR, DKIM_DOMAIN, and DKIM_PRIVATE_KEY (PEM text) or DKIM_PRIVATE_KEY_FILE.
"""

import base64
import functools
import hashlib
import logging
import re
import time
from email.utils import parseaddr

import dkim
import idna
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from django.conf import settings
from dkim.canonicalization import CanonicalizationPolicy, correct_empty_body, strip_trailing_lines

log = logging.getLogger(__name__)

#: Signed when present, in this order; From is signed once more than it appears, so no second
#: From can be added without breaking the signature (dkimpy's default "frozen" header).
SIGNED_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"list-unsubscribe", b"list-unsubscribe-post",
    b"mime-version", b"content-type",
)
_SIGNED = frozenset(SIGNED_HEADERS)
POLICY = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
HEADER_END = re.compile(rb"\r?\n\r?\n")
BARE_LF = re.compile(rb"(?<!\r)\n")
WSP_RUN = re.compile(rb"[\t ]{2,}|\t")


class DKIMConfigError(ValueError):
    pass


def ascii_domain(domain):
    """A domain in lower-case IDNA ASCII (A-labels), as d= and DNS carry it."""
    domain = domain.strip().rstrip(".").lower()
    return domain if domain.isascii() else _idna(domain)


@functools.lru_cache(maxsize=4096)
def _idna(domain):
    # UTS 46 mapping and IDNA 2008, as email-validator converts the domains a signup stores.
    return idna.encode(domain, uts46=True).decode("ascii")


def within(domain, parent):
    """True when `domain` is `parent` or one of its subdomains (both ASCII, lower case)."""
    return domain == parent or domain.endswith("." + parent)


def relaxed_body(body):
    """RFC 6376 3.4.4 relaxed body canonicalization, byte for byte what dkimpy's gives, faster.

    dkimpy rewrites every run of blanks (each single space of the text is one regex match: about
    550 us for a 17 KB issue); here only runs of two or more and tabs are rewritten, and each step
    runs only when a plain byte search finds something for it to do.
    """
    if b"\t" in body or b"  " in body:
        body = WSP_RUN.sub(b" ", body)
    if b" \r\n" in body:  # blanks at the end of a line are one space by now
        body = body.replace(b" \r\n", b"\r\n")
    return correct_empty_body(strip_trailing_lines(body))


@functools.lru_cache(maxsize=256)
def from_domain(raw_or_header):
    """The domain of a From header's address ('' when there is none)."""
    address = parseaddr(raw_or_header)[1]
    domain = address.rpartition("@")[2]
    if not domain:
        return ""
    try:
        return ascii_domain(domain)
    except UnicodeError:
        return domain.lower()


def private_key_pem():
    """The configured private key as PEM bytes, or b"" when none is set."""
    text = getattr(settings, "DKIM_PRIVATE_KEY", "")
    if text:
        # Environment variables often carry the PEM with literal "\n" for newlines.
        return text.replace("\\n", "\n").encode()
    path = getattr(settings, "DKIM_PRIVATE_KEY_FILE", "")
    if path:
        with open(path, "rb") as file:
            return file.read()
    return b""


def configured():
    return bool(getattr(settings, "DKIM_DOMAIN", "") and getattr(settings, "DKIM_SELECTOR", "")
                and (getattr(settings, "DKIM_PRIVATE_KEY", "") or getattr(settings, "DKIM_PRIVATE_KEY_FILE", "")))


def public_key_record(pem):
    """The TXT record value that publishes the public half of a PEM private key."""
    key = load_private_key(pem)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


@functools.lru_cache(maxsize=8)
def load_private_key(pem):
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise DKIMConfigError(f"DKIM_PRIVATE_KEY is not a usable PEM private key: {error}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DKIMConfigError("DKIM_PRIVATE_KEY must be an RSA key (rsa-sha256)")
    if key.key_size < 1024:
        raise DKIMConfigError("DKIM_PRIVATE_KEY must be at least 1024 bits (2048 recommended)")
    return key


class Signer:
    """Signs raw messages for one selector and domain; made once per transport (once per process)."""

    def __init__(self, selector, domain, pem):
        self.selector = selector.strip().encode("ascii")
        self.domain_text = ascii_domain(domain)
        self.domain = self.domain_text.encode("ascii")
        self.key = load_private_key(pem)
        self._warned = set()
        # Per set of header names present: the h= value and the headers to select (the same for
        # every copy of one rendition, and for most transactional mail).
        self._lists = {}

    def signs_for(self, domain):
        return bool(domain) and within(domain, self.domain_text)

    def _include(self, names):
        found = self._lists.get(names)
        if found is None:
            present = set(names)
            include = tuple(name for name in SIGNED_HEADERS if name in present)
            include = include + (b"from",) if b"from" in present else include
            found = self._lists[names] = (include, b" : ".join(include))
        return found

    def header(self, raw):
        """The DKIM-Signature header for `raw` (bytes ending in CRLF), or None when its From domain is
        outside DKIM_DOMAIN (logged once per domain and process)."""
        end = raw.find(b"\r\n\r\n")
        if end >= 0:
            head, body = raw[:end], raw[end + 4:]
        else:
            found = HEADER_END.search(raw)
            head, body = (raw, b"") if found is None else (raw[:found.start()], raw[found.end():])
        headers, _ = dkim.rfc822_parse(head + b"\r\n\r\n")
        names = tuple(name.lower() for name, _ in headers if name.lower() in _SIGNED)
        domain = next((from_domain(value.decode("utf-8", "replace")) for name, value in headers
                       if name.lower() == b"from"), "")
        if not self.signs_for(domain):
            if domain not in self._warned:
                self._warned.add(domain)
                log.warning("DKIM: not signing mail From %r: outside DKIM_DOMAIN %s", domain or "(none)",
                            self.domain_text)
            return None
        include, h_value = self._include(names)

        if body.count(b"\n") != body.count(b"\r\n"):  # bare LFs: hashed as the CRLFs a receiver reads
            body = BARE_LF.sub(b"\r\n", body)
        bodyhash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
        fields = [
            (b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/relaxed"), (b"d", self.domain),
            (b"s", self.selector), (b"t", str(int(time.time())).encode("ascii")), (b"h", h_value),
            (b"bh", bodyhash), (b"b", b"0" * 60),  # b= on a line of its own, as dkimpy folds it
        ]
        name = b"DKIM-Signature"
        value = dkim.fold(b"; ".join(b"=".join(field) for field in fields), namelen=len(name))
        value = dkim.RE_BTAG.sub(b"\\1", value)
        hasher = hashlib.sha256()
        signed = POLICY.canonicalize_headers([header for header in headers if header[0].lower() in _SIGNED])
        dkim.hash_headers(hasher, POLICY, signed, include, (name, b" " + value), None)
        signature = self.key.sign(hasher.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        fields[-1] = (b"b", base64.b64encode(signature))
        value = dkim.fold(b"; ".join(b"=".join(field) for field in fields) + b"\r\n", namelen=len(name))
        return name + b": " + value

    def sign(self, raw):
        """`raw` with its DKIM-Signature prepended (unchanged when the From domain is not ours)."""
        header = self.header(raw)
        return raw if header is None else header + raw


_signers = {}


def signer():
    """The Signer the settings describe (made once per process and configuration), or None."""
    if not configured():
        return None
    config = (settings.DKIM_SELECTOR, settings.DKIM_DOMAIN, getattr(settings, "DKIM_PRIVATE_KEY", ""),
              getattr(settings, "DKIM_PRIVATE_KEY_FILE", ""))
    if config not in _signers:
        _signers[config] = Signer(settings.DKIM_SELECTOR, settings.DKIM_DOMAIN, private_key_pem())
    return _signers[config]
