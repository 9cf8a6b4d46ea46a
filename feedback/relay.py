"""Bounces and complaints posted by an SMTP relay's webhook: Postmark's and Mailgun's JSON.

Each payload becomes one FeedbackEvent under "<provider>:<the provider's event id>", so a replayed
payload is "replayed" and changes nothing. A hard bounce is a permanent bounce; a soft one counts
toward SES_TRANSIENT_BOUNCE_LIMIT like SES's transient bounces; a complaint unsubscribes the fan
from the newsletter the message came from (when the message names a ledger row) and suppresses
the address. Anything that is neither shape is Refused (400) before anything is written.
"""

import json
from datetime import UTC, datetime

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import services
from .models import FeedbackEvent

Kind = FeedbackEvent.Kind
ACTOR = "relay"
# Postmark's bounce Types (https://postmarkapp.com/developer/api/bounce-api#bounce-types).
POSTMARK_PERMANENT = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "Blocked"}
POSTMARK_TRANSIENT = {"SoftBounce", "Transient", "DnsError"}
MAILGUN_KINDS = {"delivered": Kind.DELIVERY, "opened": Kind.OPEN, "clicked": Kind.CLICK, "accepted": Kind.SEND}


class Refused(Exception):
    """Not a payload we understand: answered 400, nothing changed."""


def payload_apply(body):
    """Apply one webhook body (bytes); "applied" or "replayed", Refused when its shape is unknown."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise Refused("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise Refused("the body is not a JSON object")
    if isinstance(payload.get("event-data"), dict):
        event = _mailgun(payload["event-data"])
    elif payload.get("RecordType") in ("Bounce", "SpamComplaint"):
        event = _postmark(payload)
    else:
        raise Refused('neither a Postmark bounce/spam complaint (RecordType) nor a Mailgun event ("event-data")')
    return services.event_apply(actor=ACTOR, **event)


def _postmark(payload):
    event_id = payload.get("ID")
    if event_id in (None, "") or isinstance(event_id, (dict, list)):
        raise Refused("a Postmark payload without its ID")
    recipients = services._recipients([payload.get("Email")])
    if not recipients:
        raise Refused("a Postmark payload without an Email")
    bounce_type = str(payload.get("Type") or "")
    if payload["RecordType"] == "SpamComplaint" or bounce_type in ("SpamComplaint", "SpamNotification"):
        kind, subtype = Kind.COMPLAINT, "abuse"
    elif bounce_type in POSTMARK_PERMANENT:
        kind, subtype = Kind.BOUNCE, "Permanent"
    elif bounce_type in POSTMARK_TRANSIENT:
        kind, subtype = Kind.BOUNCE, "Transient"
    else:  # AutoResponder, Unsubscribe, AddressChange, …: kept for the record, nothing applied
        kind, subtype = Kind.OTHER, bounce_type[:40]
    message_id = str(payload.get("MessageID") or "")[:300]
    # Postmark's MessageID is its own; our Message-ID header rides along when Postmark sends it back.
    header = _header(payload.get("Headers"), "Message-ID") or message_id
    detail = {key: value for key, value in payload.items() if key != "Content"}
    return {
        "key": services.event_key("postmark", event_id), "kind": kind, "subtype": subtype,
        "message_id": message_id, "delivery": services.delivery_by_header(header), "recipients": recipients,
        "detail": detail, "at": _when(payload.get("BouncedAt")), "source": "Postmark",
    }


def _mailgun(data):
    event_id = data.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise Refused('a Mailgun event without its "id"')
    name = data.get("event")
    recipients = services._recipients([data.get("recipient")])
    if not isinstance(name, str) or not recipients:
        raise Refused('a Mailgun event without "event" or "recipient"')
    if name == "failed":
        kind = Kind.BOUNCE
        subtype = "Permanent" if data.get("severity") == "permanent" else "Transient"
    elif name == "complained":
        kind, subtype = Kind.COMPLAINT, "abuse"
    else:
        kind, subtype = MAILGUN_KINDS.get(name, Kind.OTHER), name[:40]
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    header = _header(message.get("headers"), "message-id")
    return {
        "key": services.event_key("mailgun", event_id), "kind": kind, "subtype": subtype,
        "message_id": header[:300], "delivery": services.delivery_by_header(header), "recipients": recipients,
        "detail": data, "at": _when(data.get("timestamp")), "source": "Mailgun",
    }


def _header(headers, name):
    """A header from {"name": value} (Mailgun) or [{"Name": …, "Value": …}] (Postmark), any case."""
    if isinstance(headers, dict):
        headers = [{"Name": key, "Value": value} for key, value in headers.items()]
    for entry in headers if isinstance(headers, list) else []:
        if isinstance(entry, dict) and str(entry.get("Name", "")).lower() == name.lower():
            return str(entry.get("Value") or "").strip()
    return ""


def _when(value):
    """An ISO 8601 time (Postmark) or Unix seconds (Mailgun); now when there is none to read."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return timezone.now()
    try:
        at = parse_datetime(str(value or ""))
    except ValueError:
        at = None
    if at is None:
        return timezone.now()
    return at if at.tzinfo else at.replace(tzinfo=UTC)
