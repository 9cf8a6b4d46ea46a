"""The bounce mailbox, read over IMAP (BOUNCE_IMAP_URL): DSNs and mailto: unsubscribe requests.

Each run takes the UNSEEN messages, reading them with BODY.PEEK[] so that a message is only marked
\\Seen (and given the OaFeedback keyword) once what it says is applied and recorded. Each is stored
as FeedbackEvents under its own Message-ID ("imap:<id>"), so a message read twice (a run that
stopped between the database and the STORE) changes nothing the second time. A message that is
neither a DSN naming a failed or delayed recipient nor an unsubscribe request carrying a valid
token is left unseen, for a person to read. A connection that fails is logged; the next run tries
again and nothing is lost.
"""

import hashlib
import imaplib
import logging
import ssl
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs, unquote, urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from subscribers.models import Subscription
from subscribers.services import subscription_unsubscribe
from subscribers.tokens import read_token

from . import dsn, services
from .models import FeedbackEvent

logger = logging.getLogger(__name__)
ACTOR = "bounce-mailbox"
KEYWORD = "OaFeedback"
TIMEOUT_SECONDS = 30
MAX_MESSAGES_PER_RUN = 200
Kind = FeedbackEvent.Kind


@dataclass(frozen=True)
class MailboxUrl:
    secure: bool
    starttls: bool
    host: str
    port: int
    user: str
    password: str
    mailbox: str


def parse_url(url):
    """imaps://user:pass@host:port/INBOX, or imap://… (plain; ?starttls=1 upgrades it)."""
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps") or not parts.hostname:
        raise ValueError("BOUNCE_IMAP_URL must be imaps://user:password@host:port/MAILBOX or imap://…")
    secure = parts.scheme == "imaps"
    starttls = not secure and parse_qs(parts.query).get("starttls", ["0"])[0].lower() in ("1", "true", "yes")
    return MailboxUrl(
        secure=secure, starttls=starttls, host=parts.hostname, port=parts.port or (993 if secure else 143),
        user=unquote(parts.username or ""), password=unquote(parts.password or ""),
        mailbox=unquote(parts.path.lstrip("/")) or "INBOX",
    )


def connect(config):
    if config.secure:
        connection = imaplib.IMAP4_SSL(
            config.host, config.port, ssl_context=ssl.create_default_context(), timeout=TIMEOUT_SECONDS
        )
    else:
        connection = imaplib.IMAP4(config.host, config.port, timeout=TIMEOUT_SECONDS)
        if config.starttls:
            connection.starttls(ssl.create_default_context())
    connection.login(config.user, config.password)
    return connection


def read(url=None):
    """One pass over the mailbox: {"applied": n, "replayed": n, "ignored": n}, or None when the
    mailbox could not be read (logged; the next run tries again)."""
    url = url if url is not None else settings.BOUNCE_IMAP_URL
    if not url:
        return None
    counts = {"applied": 0, "replayed": 0, "ignored": 0}
    try:
        config = parse_url(url)
        connection = connect(config)
    except (OSError, imaplib.IMAP4.error, ValueError) as error:
        logger.warning("Could not open the bounce mailbox: %s", error)
        return None
    try:
        typ, data = connection.select(_quoted(config.mailbox))
        if typ != "OK":
            raise imaplib.IMAP4.error(f"SELECT {config.mailbox}: {data}")
        typ, data = connection.uid("SEARCH", None, "UNSEEN")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"SEARCH UNSEEN: {data}")
        uids = b" ".join(item for item in data if item).split()[:MAX_MESSAGES_PER_RUN]
        for uid in uids:
            outcome = _message(connection, uid.decode())
            if outcome:
                counts[outcome] += 1
    except (OSError, imaplib.IMAP4.error) as error:
        logger.warning("Reading the bounce mailbox stopped: %s", error)
        return None
    finally:
        try:
            connection.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
    return counts


def _message(connection, uid):
    typ, data = connection.uid("FETCH", uid, "(BODY.PEEK[])")
    raw = next((item[1] for item in data or [] if isinstance(item, tuple) and len(item) > 1), None)
    if typ != "OK" or raw is None:
        logger.warning("Could not fetch message %s of the bounce mailbox", uid)
        return None
    try:
        outcome = handle(raw)
    except Exception:  # one bad message must not stop the others; it stays unseen
        logger.exception("Could not apply message %s of the bounce mailbox", uid)
        return None
    if outcome != "ignored":
        try:
            typ, _ = connection.uid("STORE", uid, "+FLAGS", f"(\\Seen {KEYWORD})")
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error:  # BAD: a server that takes no keywords
            typ = "BAD"
        if typ != "OK":
            connection.uid("STORE", uid, "+FLAGS", "(\\Seen)")
    return outcome


def handle(raw):
    """Apply one message (bytes): "applied", "replayed" (seen before) or "ignored" (not ours to read)."""
    message = dsn.message_from_bytes(raw)
    mail_id = dsn.message_id(message) or "sha256:" + hashlib.sha256(raw).hexdigest()
    at = _date(message)
    report = dsn.delivery_report(message)
    if report is not None:
        delivery = services.delivery_by_header(report.original_message_id)
        # Anyone can mail this mailbox: a report counts only about a message we sent, to the
        # address it names. Others (a forgery, a bounce of mail outside the ledger) stay unread.
        ours = delivery.subscriber.email.lower() if delivery is not None and delivery.subscriber_id else None
        bounces = [bounce for bounce in report.bounces if ours and bounce.recipient.lower() == ours]
        if not bounces:
            return "ignored"
        outcomes = []
        for index, bounce in enumerate(bounces):
            outcomes.append(services.event_apply(
                key=services.event_key("imap", mail_id if not index else f"{mail_id}#{index}"),
                kind=Kind.BOUNCE, subtype=bounce.bounce_type, message_id=report.original_message_id[:300],
                delivery=delivery, recipients=[bounce.recipient], at=at, actor=ACTOR, source="returned",
                detail={"source": "imap", "message_id": mail_id, "action": bounce.action,
                        "status": bounce.status, "diagnostic": bounce.diagnostic},
            ))
        return "applied" if "applied" in outcomes else "replayed"
    token = dsn.unsubscribe_token(message)
    subscription_id = read_token("unsubscribe", token) if token else None
    if subscription_id is None:
        return "ignored"
    subscription = Subscription.objects.select_related("subscriber").filter(pk=subscription_id).first()
    if subscription is None:
        return "ignored"
    try:
        with transaction.atomic():
            FeedbackEvent.objects.create(
                sns_message_id=services.event_key("imap", mail_id), kind=Kind.SUBSCRIPTION, subtype="unsubscribe",
                recipient=subscription.subscriber.email[:254], at=at,
                detail={"source": "imap", "message_id": mail_id, "subscription": subscription_id,
                        "from": str(message.get("From") or "")[:300]},
            )
            subscription_unsubscribe(subscription_id=subscription_id, detail="mailto: unsubscribe (List-Unsubscribe)")
    except IntegrityError:
        return "replayed"
    return "applied"


def _date(message):
    try:
        at = parsedate_to_datetime(str(message.get("Date") or ""))
    except (TypeError, ValueError, IndexError):
        return timezone.now()
    if at is None or at.tzinfo is None:
        return timezone.now()
    return at


def _quoted(mailbox):
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'
