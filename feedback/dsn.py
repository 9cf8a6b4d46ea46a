"""Reading mail that comes back: delivery status notifications (RFC 3464) and mailto: unsubscribes.

Pure functions over bytes; feedback/mailbox.py decides what to do with what they find.
"""

import email
import email.header
import email.policy
import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser, HeaderParser
from email.utils import parseaddr

# What our List-Unsubscribe mailto: puts in the subject (delivery/mime.py): "unsubscribe <token>",
# the token being the one-click link's last segment (subscribers/tokens.py: "<base62>:<signature>").
UNSUBSCRIBE = re.compile(r"(?<![\w/])unsubscribe\s+([0-9A-Za-z]+:[0-9A-Za-z_-]{10,})", re.IGNORECASE)
STATUS = re.compile(r"([245])\.\d{1,3}\.\d{1,3}")
MAX_BODY_CHARS = 10_000


@dataclass(frozen=True)
class Bounce:
    recipient: str
    bounce_type: str  # "Permanent", "Transient" or "Undetermined", as SES names them
    action: str
    status: str
    diagnostic: str


@dataclass(frozen=True)
class Report:
    """A DSN: the bounced recipients and the Message-ID of the message that came back."""

    bounces: list
    original_message_id: str


def message_from_bytes(raw):
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def message_id(message):
    return str(message.get("Message-ID") or "").strip()


def delivery_report(message):
    """The Report in a multipart/report; report-type=delivery-status message, or None when it is not
    one or names no failed or delayed recipient."""
    if message.get_content_type() != "multipart/report":
        return None
    if str(message.get_param("report-type") or "").lower() != "delivery-status":
        return None
    status_part = original = None
    for part in message.get_payload() if message.is_multipart() else []:
        content_type = part.get_content_type()
        if content_type == "message/delivery-status" and status_part is None:
            status_part = part
        elif content_type in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers") and original is None:
            original = part
    if status_part is None:
        return None
    bounces = [bounce for bounce in map(_bounce, _recipient_blocks(status_part)) if bounce]
    if not bounces:
        return None
    return Report(bounces=bounces, original_message_id=_original_message_id(original))


def _recipient_blocks(part):
    """The per-recipient field groups (the first group is about the message; the rest, one recipient each)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = payload
    else:  # a status part the parser left as text
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
        text = text.replace("\r\n", "\n")
        blocks = [HeaderParser().parsestr(chunk + "\n") for chunk in re.split(r"\n\s*\n", text) if chunk.strip()]
    return [block for block in blocks if block.get("Final-Recipient") or block.get("Original-Recipient")]


def _bounce(block):
    action = str(block.get("Action") or "").strip().lower()
    if action not in ("failed", "delayed"):
        return None  # delivered, relayed, expanded: nothing to act on
    address = _address(block.get("Original-Recipient")) or _address(block.get("Final-Recipient"))
    if not address:
        return None
    found = STATUS.search(str(block.get("Status") or ""))
    status = found.group(0) if found else ""
    if action == "delayed" or (found and found.group(1) == "4"):
        bounce_type = "Transient"
    elif found and found.group(1) == "5":
        bounce_type = "Permanent"
    else:
        bounce_type = "Undetermined"
    diagnostic = " ".join(str(block.get("Diagnostic-Code") or "").split())[:500]
    return Bounce(recipient=address, bounce_type=bounce_type, action=action, status=status, diagnostic=diagnostic)


def _address(field):
    """The address in "rfc822; fan@example.org" (another address type gives none)."""
    kind, _, value = str(field or "").partition(";")
    if not value or kind.strip().lower() != "rfc822":
        return ""
    address = parseaddr(value.strip())[1]
    return address.lower()[:254] if "@" in address else ""


def _original_message_id(part):
    if part is None:
        return ""
    payload = part.get_payload()
    if isinstance(payload, list) and payload:  # message/rfc822: the returned message, parsed
        return message_id(payload[0])
    if isinstance(payload, bytes):
        headers = BytesHeaderParser().parsebytes(payload)
    else:
        headers = HeaderParser().parsestr(str(payload or "").lstrip("\r\n"))
    return message_id(headers)


def unsubscribe_token(message):
    """The token of a mailto: unsubscribe request, from its subject or else its first text part;
    "" when the message is not one. Attached or forwarded messages are not read: a returned copy of
    our own mail carries the token in its List-Unsubscribe header."""
    found = UNSUBSCRIBE.search(_decoded_subject(message))
    if not found:
        found = UNSUBSCRIBE.search(_first_text(message))
    return found.group(1) if found else ""


def _decoded_subject(message):
    raw = message.get("Subject")
    if raw is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(raw))))
    except (LookupError, UnicodeError, ValueError):
        return str(raw)


def _first_text(message):
    part = message
    while part.is_multipart():
        if part.get_content_type() in ("multipart/report",):
            return ""
        children = part.get_payload()
        if not children:
            return ""
        part = children[0]
    if part.get_content_type() != "text/plain":
        return ""
    payload = part.get_payload(decode=True) or b""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload.decode(charset, "replace")
    except LookupError:
        text = payload.decode("utf-8", "replace")
    return text[:MAX_BODY_CHARS]
