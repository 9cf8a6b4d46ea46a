"""Prepared message bytes: built once per rendition, personalized per recipient by substitution.

Per recipient the engine only fills the placeholders (name, unsubscribe and preference
links), encodes the two body parts as quoted-printable (C code in binascii) and adds the
few headers that differ (To, Message-ID, Date, List-Unsubscribe).
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

from django.conf import settings

from subscribers.tokens import make_token

from .outbox import NEWSLETTER_HEADER
from .transports import Outgoing
from .rendering import NAME, PREFERENCES_URL, UNSUBSCRIBE_URL

HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


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
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((newsletter.sender_name or newsletter.name, newsletter.sender_email))
    if newsletter.reply_to:
        message["Reply-To"] = newsletter.reply_to
    message["Subject"] = issue.title
    site_host = settings.SITE_URL.split("://", 1)[-1].split("/", 1)[0].split(":")[0]
    message["List-Id"] = f"{newsletter.name} <{newsletter.slug}.{site_host}>"
    message[NEWSLETTER_HEADER] = newsletter.slug
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["MIME-Version"] = "1.0"
    return message.as_string(policy=SMTP).rstrip("\r\n") + "\r\n"


def link(purpose, subscription_id):
    """The fan's own link for `purpose`: the paths of subscribers:unsubscribe and subscribers:preferences.

    Built by hand rather than with reverse(): it runs twice per message of every send.
    """
    return f"{settings.SITE_URL}/{purpose}/{make_token(purpose, subscription_id)}"


class PreparedMessage:
    def __init__(self, *, issue, headers, html_body, text_body, unsubscribe_mailto=None):
        newsletter = issue.newsletter
        self.issue_id = issue.pk
        self.sender = newsletter.sender_email
        self.domain = newsletter.sender_email.rsplit("@", 1)[-1]
        self.unsubscribe_mailto = unsubscribe_mailto or newsletter.reply_to or newsletter.sender_email
        self.boundary = f"=_oa_{secrets.token_hex(12)}"
        self.head = (
            headers
            + f'Content-Type: multipart/alternative; boundary="{self.boundary}"\r\n'
        ).encode("ascii")
        self.text = _crlf(text_body)
        self.html = _crlf(html_body)
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
        unsubscribe_url = unsubscribe_url or link("unsubscribe", recipient.subscription_id)
        preferences_url = preferences_url or link("preferences", recipient.subscription_id)
        name = HEADER_UNSAFE.sub("", recipient.name).strip()
        text = self.text.replace(NAME, name).replace(UNSUBSCRIBE_URL, unsubscribe_url)
        text = text.replace(PREFERENCES_URL, preferences_url)
        body_html = self.html.replace(NAME, html.escape(name)).replace(UNSUBSCRIBE_URL, unsubscribe_url)
        body_html = body_html.replace(PREFERENCES_URL, preferences_url)
        message_id = self.message_id(recipient.delivery_id)
        mailto = f"mailto:{self.unsubscribe_mailto}?subject={quote('unsubscribe ' + unsubscribe_url.rsplit('/', 1)[-1])}"
        to = formataddr((name, recipient.email), charset="utf-8") if name else recipient.email
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
            binascii.b2a_qp(text.encode("utf-8"), istext=True),
            self.part_html,
            binascii.b2a_qp(body_html.encode("utf-8"), istext=True),
            self.closing,
        ))
        return Outgoing(recipient.delivery_id, self.sender, recipient.email, message_id, raw)


def format_datetime_now():
    from django.utils import timezone

    return format_datetime(timezone.now())
