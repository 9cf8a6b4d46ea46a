"""Applying what SES tells us over SNS: bounces and complaints stop mail to an address.

Every SNS message is stored once, by its SNS id, in the same transaction as what it changes, so a
replay (SNS delivers at least once) is answered 200 and changes nothing.

A permanent bounce suppresses the address and marks every live subscription of it bounced, on
every newsletter: the mailbox does not exist for anyone, a suppressed address is mailed by no
newsletter anyway, and each creator's list then says why. Transient (and undetermined) bounces
do the same once an address has `SES_TRANSIENT_BOUNCE_LIMIT` of them within
`SES_TRANSIENT_BOUNCE_WINDOW_DAYS`. A complaint is about one newsletter: the fan leaves that one
(complained), and the address is suppressed, since SES counts every complaint against the account.
"""

import hashlib
import json
import logging
from datetime import timedelta
from email.utils import parseaddr

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from delivery.models import Delivery
from subscribers.addresses import normalize_email
from subscribers.models import Subscription, SubscriptionEvent, Suppression
from subscribers.services import subscribers_by_address, subscription_change

from . import sns
from .models import FeedbackEvent

logger = logging.getLogger(__name__)
ACTOR = "ses"
Kind = FeedbackEvent.Kind
# SES names the type `notificationType` in identity notifications and `eventType` in a configuration
# set's event publishing.
KINDS = {
    "Delivery": Kind.DELIVERY, "Bounce": Kind.BOUNCE, "Complaint": Kind.COMPLAINT, "Open": Kind.OPEN,
    "Click": Kind.CLICK, "Reject": Kind.REJECT, "DeliveryDelay": Kind.DELIVERY_DELAY, "Send": Kind.SEND,
    "Rendering Failure": Kind.RENDERING_FAILURE, "Subscription": Kind.SUBSCRIPTION,
}
# Where each event keeps its own object, its time and its recipients.
OBJECTS = {
    Kind.DELIVERY: ("delivery", "recipients"), Kind.BOUNCE: ("bounce", "bouncedRecipients"),
    Kind.COMPLAINT: ("complaint", "complainedRecipients"), Kind.OPEN: ("open", None), Kind.CLICK: ("click", None),
    Kind.REJECT: ("reject", None), Kind.DELIVERY_DELAY: ("deliveryDelay", "delayedRecipients"),
    Kind.RENDERING_FAILURE: ("failure", None), Kind.SUBSCRIPTION: ("subscription", None),
}
LIVE = [Subscription.Status.ACTIVE, Subscription.Status.PENDING]


def message_apply(message):
    """Apply a verified SNS message (sns.verified_message); returns what happened, for the answer."""
    if FeedbackEvent.objects.filter(sns_message_id=message["MessageId"]).exists():
        return "replayed"
    if message["Type"] == sns.SUBSCRIBE:
        return _confirm_subscription(message)
    if message["Type"] == sns.UNSUBSCRIBE:
        logger.warning("SNS ended the subscription to %s", message["TopicArn"])
        return _stored(message, kind=Kind.SNS_UNSUBSCRIBED, detail={"topic": message["TopicArn"]})
    return _apply_ses_event(message)


def _confirm_subscription(message):
    """GET the SubscribeURL (checked to be an SNS host by the verification) to start receiving."""
    sns.https_get(message["SubscribeURL"])
    logger.info("Confirmed the SNS subscription to %s", message["TopicArn"])
    return _stored(message, kind=Kind.SNS_SUBSCRIBED, detail={"topic": message["TopicArn"]})


def _stored(message, **fields):
    """Store the message's event once; "replayed" when a copy of it got in first."""
    try:
        with transaction.atomic():
            FeedbackEvent.objects.create(
                sns_message_id=message["MessageId"], at=parse_datetime(message["Timestamp"]), **fields
            )
    except IntegrityError:
        return "replayed"
    return "applied"


def _apply_ses_event(message):
    event = _ses_event(message["Message"])
    kind = KINDS.get(event.get("eventType") or event.get("notificationType"), Kind.OTHER)
    mail = event.get("mail") if isinstance(event.get("mail"), dict) else {}
    name, recipients_key = OBJECTS.get(kind, (None, None))
    body = event.get(name) if isinstance(event.get(name), dict) else {}
    recipients = _recipients(body.get(recipients_key) if recipients_key else None) or _recipients(
        mail.get("destination")
    )
    subtype = str(body.get("bounceType") or body.get("complaintFeedbackType") or "")[:40]
    message_id = str(mail.get("messageId") or "")[:300]
    delivery = _delivery(message_id, mail)
    at = parse_datetime(str(body.get("timestamp") or mail.get("timestamp") or "")) or parse_datetime(
        message["Timestamp"]
    )
    return event_apply(
        key=message["MessageId"], kind=kind, subtype=subtype, message_id=message_id, delivery=delivery,
        recipients=recipients, detail=event, at=at,
    )


def event_apply(*, key, kind, subtype, message_id, delivery, recipients, detail, at, actor=ACTOR, source="SES"):
    """Store one provider event under `key` (unique: a replay is "replayed" and changes nothing) and,
    in the same transaction, apply a bounce or complaint. Shared by SES, the relay webhooks
    (feedback/relay.py) and the bounce mailbox (feedback/mailbox.py). A bounce's `subtype` is
    "Permanent" for a hard bounce; anything else counts toward the transient limit."""
    try:
        with transaction.atomic():
            FeedbackEvent.objects.create(
                sns_message_id=key, kind=kind, subtype=subtype,
                delivery_id=delivery.pk if delivery else None, message_id=message_id,
                recipient=recipients[0] if recipients else "", detail=detail, at=at,
            )
            if kind == Kind.BOUNCE:
                _bounced(recipients, subtype, message_id, actor=actor, source=source)
            elif kind == Kind.COMPLAINT:
                _complained(recipients, delivery, subtype, actor=actor)
    except IntegrityError:
        return "replayed"
    if kind in (Kind.BOUNCE, Kind.COMPLAINT) and delivery is not None:
        from .guard import check_send

        check_send(delivery.issue_id)  # whichever source told us: SES, a relay, the bounce mailbox
    return "applied"


def event_key(source, value):
    """A FeedbackEvent key for another provider's event id: "<source>:<id>", hashed when too long."""
    key = f"{source}:{value}"
    if len(key) > FeedbackEvent._meta.get_field("sns_message_id").max_length:
        key = f"{source}:sha256:{hashlib.sha256(str(value).encode()).hexdigest()}"
    return key


def _ses_event(text):
    try:
        event = json.loads(text)
    except ValueError:
        raise sns.Refused("the notification is not an SES event") from None
    if not isinstance(event, dict) or not (event.get("eventType") or event.get("notificationType")):
        raise sns.Refused("the notification is not an SES event")
    return event


def _recipients(entries):
    """Lower-case addresses from SES's list of strings or of {"emailAddress": …} objects."""
    addresses = []
    for entry in entries if isinstance(entries, list) else []:
        value = entry.get("emailAddress") if isinstance(entry, dict) else entry
        address = parseaddr(str(value or ""))[1]
        if "@" in address:
            addresses.append(normalize_email(address).lower()[:254])
    return addresses


def _delivery(message_id, mail):
    """The ledger row SES's message id belongs to.

    Our Message-ID header names the row (`<oa.ISSUE.DELIVERY@…>`, delivery/mime.py), and SES
    repeats it in `commonHeaders`, so the row is found by its primary key and confirmed by the
    provider id; only without that header is the ledger searched by the provider id.
    """
    if not message_id:
        return None
    header = str((mail.get("commonHeaders") or {}).get("messageId") or "")
    pk = ledger_pk(header)
    if pk is not None:
        return Delivery.objects.filter(pk=pk, message_id=message_id).first()
    return Delivery.objects.filter(message_id=message_id).first()


def ledger_pk(header):
    """The ledger row's id in our Message-ID `<oa.ISSUE.DELIVERY@…>` (brackets optional), or None."""
    parts = str(header or "").strip().strip("<>").split("@")[0].split(".")
    if len(parts) == 3 and parts[0] == "oa" and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[2])
    return None


def delivery_by_header(header):
    """The ledger row a relay or a returned message names by our Message-ID header: found by the id
    in it and confirmed by its issue; failing that, by the ledger's recorded message id."""
    header = str(header or "").strip()
    if not header:
        return None
    pk = ledger_pk(header)
    if pk is not None:
        issue_id = int(header.strip("<>").split("@")[0].split(".")[1])
        return Delivery.objects.filter(pk=pk, issue_id=issue_id).first()
    bare = header.strip("<>")
    return Delivery.objects.filter(message_id__in=[bare, f"<{bare}>"]).first()


def _bounced(addresses, bounce_type, message_id, *, actor=ACTOR, source="SES"):
    for address in addresses:
        if bounce_type == "Permanent":
            _stop(address, Suppression.Reason.BOUNCE, f"permanent bounce of {source} message {message_id}",
                  actor=actor)
            continue
        since = timezone.now() - timedelta(days=settings.SES_TRANSIENT_BOUNCE_WINDOW_DAYS)
        count = FeedbackEvent.objects.filter(
            recipient=address, kind=Kind.BOUNCE, at__gte=since
        ).exclude(subtype="Permanent").count()
        if count >= settings.SES_TRANSIENT_BOUNCE_LIMIT:
            _stop(address, Suppression.Reason.BOUNCE,
                  f"{count} transient bounces in {settings.SES_TRANSIENT_BOUNCE_WINDOW_DAYS} days", actor=actor)


def _stop(address, reason, detail, *, actor=ACTOR):
    """Suppress the address and mark its live subscriptions bounced, on every newsletter."""
    _suppress(address, reason, detail)
    subscription_change(
        Subscription.objects.filter(subscriber__in=subscribers_by_address(address)),
        kind=SubscriptionEvent.Kind.BOUNCE, actor=actor, status=Subscription.Status.BOUNCED,
        from_statuses=LIVE, detail=detail,
    )


def _complained(addresses, delivery, feedback_type, *, actor=ACTOR):
    detail = f"complaint ({feedback_type or 'no type given'})"
    for address in addresses:
        _suppress(address, Suppression.Reason.COMPLAINT, detail)
        if delivery is None:
            continue
        subscription_change(
            Subscription.objects.filter(
                subscriber__in=subscribers_by_address(address), newsletter_id=delivery.issue.newsletter_id
            ),
            kind=SubscriptionEvent.Kind.COMPLAINT, actor=actor, status=Subscription.Status.COMPLAINED,
            from_statuses=[*LIVE, Subscription.Status.BOUNCED], detail=detail,
            fields={"unsubscribed_at": timezone.now()},
        )


def _suppress(address, reason, detail):
    """Put the address on the suppression list, unless it is there already (for whatever reason)."""
    if Suppression.objects.filter(email__iexact=address).exists():
        return
    try:
        with transaction.atomic():
            Suppression.objects.create(email=address, reason=reason, detail=detail)
    except IntegrityError:
        pass  # Another message about this address got there first.
