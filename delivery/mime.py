"""Prepared message bytes: built once per rendition, personalized per recipient by substitution.

Both body parts are quoted-printable encoded once, cut at their placeholders. Per recipient
the engine encodes only the short values (name, unsubscribe and preference links), each set
between soft line breaks so every line stays within 76 characters, joins the pieces, and
adds the few headers that differ (To, Message-ID, Date, List-Unsubscribe).
"""

import binascii
import html
import re
import secrets
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from urllib.parse import quote

from newsletters.rendering import NAME, PREFERENCES_URL, RECIPIENT, UNSUBSCRIBE_URL
from ownedaudience import links
from subscribers.emails import one_line
from transports import Outgoing

from .engagement import recipient_token
from .outbox import NEWSLETTER_HEADER

HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
PLACEHOLDERS = re.compile(
    f"({re.escape(NAME)}|{re.escape(UNSUBSCRIBE_URL)}|{re.escape(PREFERENCES_URL)}|{re.escape(RECIPIENT)})"
)
SOFT_BREAK = b"=\r\n"
BARE_LF = re.compile(rb"(?<!\r)\n")


def qp(data):
    encoded = binascii.b2a_qp(data, istext=True)
    if b"\n" in encoded:
        # b2a_qp breaks long lines with a bare LF when its input holds no CRLF; mail wants CRLF.
        encoded = BARE_LF.sub(b"\r\n", encoded).replace(b"\n.", b"\n=2E")
    # No line may start with a dot (SMTP would read it as the end), so the transport never
    # has to dot-stuff a whole message: encode it as =2E, which reads back the same.
    return b"=2E" + encoded[1:] if encoded.startswith(b".") else encoded


def encode_template(text):
    """A body as quoted-printable pieces: bytes for the fixed parts, the placeholder for the rest."""
    pieces = []
    for index, part in enumerate(PLACEHOLDERS.split(text)):
        if index % 2:
            pieces.append(part)
        elif part:
            pieces.append(qp(part.encode("utf-8")))
    return pieces


def encode_value(value):
    """A value for a placeholder, on lines of its own joined by soft breaks (invisible once decoded)."""
    return SOFT_BREAK + qp(value.encode("utf-8")) + SOFT_BREAK


def fill(pieces, values):
    return b"".join(piece if isinstance(piece, bytes) else values[piece] for piece in pieces)


@dataclass(frozen=True)
class Recipient:
    delivery_id: int
    email: str
    name: str
    subscription_id: int


def _crlf(text):
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def shared_headers(issue):
    """The header block every recipient's copy shares, folded and encoded by the email package."""
    newsletter = issue.newsletter
    name = one_line(newsletter.name)
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((one_line(newsletter.sender_name) or name, one_line(newsletter.sender_email)))
    reply_to = one_line(newsletter.reply_to)
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = one_line(issue.title)
    message["List-Id"] = f"{name} <{newsletter.slug}.{links.site_host()}>"
    message[NEWSLETTER_HEADER] = newsletter.slug
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["MIME-Version"] = "1.0"
    return message.as_string(policy=SMTP).rstrip("\r\n") + "\r\n"


class PreparedMessage:
    def __init__(self, *, issue, headers, html_body, text_body, unsubscribe_mailto=None):
        newsletter = issue.newsletter
        self.issue_id = issue.pk
        self.sender = newsletter.sender_email
        self.domain = newsletter.sender_email.rsplit("@", 1)[-1]
        # Into every copy's List-Unsubscribe header: no whitespace or control character can ride along.
        mailto = unsubscribe_mailto or newsletter.reply_to or newsletter.sender_email
        self.unsubscribe_mailto = re.sub(r"[\x00-\x20\x7f<>]", "", mailto)
        self.boundary = f"=_oa_{secrets.token_hex(12)}"
        self.head = (
            headers
            + f'Content-Type: multipart/alternative; boundary="{self.boundary}"\r\n'
        ).encode("ascii")
        self.text = encode_template(_crlf(text_body))
        self.html = encode_template(_crlf(html_body))
        # Engagement per fan (engagement.py): tracked links and the pixel carry the recipient's token.
        self.per_recipient = RECIPIENT in self.text or RECIPIENT in self.html
        self.part_text = (
            f"--{self.boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode()
        self.part_html = (
            f"\r\n--{self.boundary}\r\nContent-Type: text/html; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode()
        self.closing = f"\r\n--{self.boundary}--\r\n".encode()

    @classmethod
    def from_rendition(cls, rendition):
        return cls(issue=rendition.issue, headers=rendition.headers, html_body=rendition.html, text_body=rendition.text)

    def message_id(self, delivery_id):
        # The same for every attempt at one delivery, so a receiving server can drop a repeat.
        return f"<oa.{self.issue_id}.{delivery_id}@{self.domain}>"

    def build(self, recipient, date=None, unsubscribe_url=None, preferences_url=None):
        unsubscribe_url = unsubscribe_url or links.fan("unsubscribe", recipient.subscription_id)
        preferences_url = preferences_url or links.fan("preferences", recipient.subscription_id)
        name = HEADER_UNSAFE.sub("", recipient.name).strip()
        encoded_links = {UNSUBSCRIBE_URL: encode_value(unsubscribe_url), PREFERENCES_URL: encode_value(preferences_url)}
        if self.per_recipient:
            encoded_links[RECIPIENT] = encode_value(recipient_token(self.issue_id, recipient.delivery_id))
        text = fill(self.text, {NAME: encode_value(name), **encoded_links})
        body_html = fill(self.html, {NAME: encode_value(html.escape(name)), **encoded_links})
        message_id = self.message_id(recipient.delivery_id)
        mailto = f"mailto:{self.unsubscribe_mailto}?subject={quote('unsubscribe ' + unsubscribe_url.rsplit('/', 1)[-1])}"
        address = recipient.email if recipient.email.isascii() else _ascii_domain(recipient.email)
        if not name:
            to = address
        elif address.isascii():
            to = formataddr((name, address), charset="utf-8")
        else:
            to = _named_unicode_address(name, address)
        personal = (
            f"To: {to}\r\n"
            f"Date: {date or format_datetime_now()}\r\n"
            f"Message-ID: {message_id}\r\n"
            f"List-Unsubscribe: <{unsubscribe_url}>, <{mailto}>\r\n\r\n"
        ).encode("utf-8")
        raw = b"".join((
            self.head,
            personal,
            self.part_text,
            text,
            self.part_html,
            body_html,
            self.closing,
        ))
        return Outgoing(recipient.delivery_id, self.sender, recipient.email, message_id, raw)


def _ascii_domain(address):
    """The address with an IDN domain in its IDNA form, as the envelope carries it; an address that
    cannot be converted is left as it is (the transport then fails that one message)."""
    from transports.smtp import idna_address

    try:
        return idna_address(address)
    except UnicodeError:
        return address


def _named_unicode_address(name, address):
    """`Name <address>` for a local part only SMTPUTF8 carries (raw UTF-8, RFC 6532), which formataddr
    refuses; the name encoded as formataddr encodes it."""
    return formataddr((name, ""), charset="utf-8").removesuffix("<>") + f"<{address}>"


def format_datetime_now():
    from django.utils import timezone

    return format_datetime(timezone.now())
