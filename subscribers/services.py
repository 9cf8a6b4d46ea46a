"""State changes for the audience."""

from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from .addresses import normalize_email
from .models import OwedEmail, Subscriber, Subscription


def subscribers_by_address(email):
    """Rows for this address whatever its case, through the lower(email) unique index."""
    return Subscriber.objects.annotate(email_lower=Lower("email")).filter(
        email_lower=normalize_email(email).lower()
    )


def subscriber_ensure(*, email, name=""):
    """The one subscriber row for this address, whatever its case; made if missing."""
    email = normalize_email(email)
    existing = Subscriber.objects.filter(email__iexact=email).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            return Subscriber.objects.create(email=email, name=name)
    except IntegrityError:
        # Another request made it between our read and our write.
        return Subscriber.objects.get(email__iexact=email)


def subscription_exists(*, email, newsletter):
    return Subscription.objects.filter(
        subscriber__email__iexact=normalize_email(email), newsletter=newsletter
    ).exists()


def subscriptions_unsubscribe(queryset):
    """Unsubscribe every subscription in `queryset` that is not already out; returns how many."""
    return queryset.exclude(status=Subscription.Status.UNSUBSCRIBED).update(
        status=Subscription.Status.UNSUBSCRIBED, unsubscribed_at=timezone.now()
    )


# --- Audience capture: signup, confirmation, leaving, rejoining --------------------------------


class SignupOutcome:
    """What a signup did. The fan is told the same thing in every case (see the view)."""

    NEW = "new"
    RESENT = "resent"  # still pending: a fresh confirmation email is owed
    REJOINING = "rejoining"  # had left: pending again, with a new consent record
    ALREADY_ACTIVE = "already_active"
    SUPPRESSED = "suppressed"  # bounced or complained: nothing is sent


def _insert_ignoring_conflict(model, **values):
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: the new row's id, or None if a unique index said no.

    One round trip, and no savepoint, on PostgreSQL and SQLite alike.
    """
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(name) for name in values]
    columns = ", ".join(quote(field.column) for field in fields)
    params = [field.get_db_prep_save(values[field.name], connection) for field in fields]
    placeholders = ", ".join(["%s"] * len(fields))
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT DO NOTHING RETURNING {quote(model._meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


def _subscriber_id_for(email, name, now):
    subscriber_id = _insert_ignoring_conflict(Subscriber, email=email, name=name, created_at=now)
    if subscriber_id is None:
        subscriber_id = subscribers_by_address(email).values_list("id", flat=True).get()
    return subscriber_id


def _consent(*, form, consent_text, ip, user_agent, now):
    return {
        "consent_form": form[:100],
        "consent_text": consent_text,
        "consent_at": now,
        "consent_ip": ip,
        "consent_user_agent": (user_agent or "")[:500],
    }


def nudge_after_commit():
    from .dispatch import nudge_after_commit

    nudge_after_commit()


def owe_email(subscription_id, kind):
    """Record an email this transaction owes; the dispatcher sends it after commit."""
    OwedEmail.objects.create(subscription_id=subscription_id, kind=kind)
    nudge_after_commit()


def signup(*, newsletter, email, name="", source="", form="page", consent_text="", ip=None, user_agent=""):
    """Take a signup: the subscription (pending) and its owed confirmation email, in one transaction.

    `email` must already be validated (subscribers.forms.SignupForm). Returns (subscription_id, outcome).
    """
    now = timezone.now()
    consent = _consent(form=form, consent_text=consent_text, ip=ip, user_agent=user_agent, now=now)
    if connection.vendor == "postgresql":
        # The common case, a new address, in one statement (and one round trip).
        subscription_id = _signup_new_address(newsletter, email, name, source[:100], consent, now)
        if subscription_id is not None:
            nudge_after_commit()
            return subscription_id, SignupOutcome.NEW
    with transaction.atomic():
        return _signup(newsletter, email, name, source[:100], consent, now)


_SUBSCRIPTION_COLUMNS = (
    "newsletter",
    "status",
    "tier",
    "source",
    "created_at",
    "updated_at",
    "consent_form",
    "consent_text",
    "consent_at",
    "consent_ip",
    "consent_user_agent",
)
_OWED_COLUMNS = ("kind", "status", "attempts", "due_at", "claim", "error", "created_at")
_new_address_sql = None


def _new_address_statement():
    """INSERT … WITH for a new address; built once per process from the models."""
    global _new_address_sql
    if _new_address_sql is None:
        quote = connection.ops.quote_name

        def columns(model, names):
            fields = [model._meta.get_field(name) for name in names]
            return (
                ", ".join(quote(field.column) for field in fields),
                ", ".join(f"%s::{field.db_type(connection).split('(')[0]}" for field in fields),
            )

        subscription_columns, subscription_values = columns(Subscription, _SUBSCRIPTION_COLUMNS)
        owed_columns, owed_values = columns(OwedEmail, _OWED_COLUMNS)
        _new_address_sql = f"""
            WITH new_subscriber AS (
                INSERT INTO {quote(Subscriber._meta.db_table)} (email, name, created_at)
                VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING id
            ), new_subscription AS (
                INSERT INTO {quote(Subscription._meta.db_table)} (subscriber_id, {subscription_columns})
                SELECT id, {subscription_values} FROM new_subscriber RETURNING id
            )
            INSERT INTO {quote(OwedEmail._meta.db_table)} (subscription_id, {owed_columns})
            SELECT id, {owed_values} FROM new_subscription RETURNING subscription_id
        """
    return _new_address_sql


def _signup_new_address(newsletter, email, name, source, consent, now):
    """Subscriber, subscription and owed confirmation in one INSERT … WITH; None if the address exists."""
    subscription = {
        "newsletter": newsletter.pk,
        "status": Subscription.Status.PENDING,
        "tier": Subscription.Tier.FREE,
        "source": source,
        "created_at": now,
        "updated_at": now,
        **consent,
    }
    owed = {
        "kind": OwedEmail.Kind.CONFIRMATION,
        "status": OwedEmail.Status.PENDING,
        "attempts": 0,
        "due_at": now,
        "claim": "",
        "error": "",
        "created_at": now,
    }
    params = [
        email,
        name,
        now,
        *(subscription[name] for name in _SUBSCRIPTION_COLUMNS),
        *(owed[name] for name in _OWED_COLUMNS),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_new_address_statement(), params)
        row = cursor.fetchone()
    return row[0] if row else None


def _signup(newsletter, email, name, source, consent, now):
    subscriber_id = _subscriber_id_for(email, name, now)
    subscription_id = _insert_ignoring_conflict(
        Subscription,
        subscriber=subscriber_id,
        newsletter=newsletter.pk,
        status=Subscription.Status.PENDING,
        tier=Subscription.Tier.FREE,
        source=source,
        created_at=now,
        updated_at=now,
        **consent,
    )
    if subscription_id is not None:
        owe_email(subscription_id, OwedEmail.Kind.CONFIRMATION)
        return subscription_id, SignupOutcome.NEW

    subscription = Subscription.objects.select_for_update().get(
        subscriber_id=subscriber_id, newsletter=newsletter
    )
    if subscription.status == Subscription.Status.ACTIVE:
        return subscription.id, SignupOutcome.ALREADY_ACTIVE
    if subscription.status in (Subscription.Status.BOUNCED, Subscription.Status.COMPLAINED):
        return subscription.id, SignupOutcome.SUPPRESSED
    outcome = SignupOutcome.RESENT
    if subscription.status == Subscription.Status.UNSUBSCRIBED:
        outcome = SignupOutcome.REJOINING
        subscription.status = Subscription.Status.PENDING
        subscription.source = source or subscription.source
        subscription.confirmed_at = None
    for field, value in consent.items():
        setattr(subscription, field, value)
    subscription.save()
    owe_email(subscription.id, OwedEmail.Kind.CONFIRMATION)
    return subscription.id, outcome


def subscription_confirm(*, subscription_id):
    """Pending -> active, once; owes the welcome email when the creator wrote one.

    Returns the subscription (None when it no longer exists) and whether this call confirmed it.
    """
    with transaction.atomic():
        subscription = (
            Subscription.objects.select_for_update(of=("self",))
            .select_related("newsletter", "subscriber")
            .filter(id=subscription_id)
            .first()
        )
        if subscription is None or subscription.status != Subscription.Status.PENDING:
            return subscription, False
        subscription.status = Subscription.Status.ACTIVE
        subscription.confirmed_at = timezone.now()
        subscription.unsubscribed_at = None
        subscription.save(update_fields=["status", "confirmed_at", "unsubscribed_at", "updated_at"])
        newsletter = subscription.newsletter
        if newsletter.welcome_subject.strip() and newsletter.welcome_body.strip():
            owe_email(subscription.id, OwedEmail.Kind.WELCOME)
    return subscription, True


def subscription_unsubscribe(*, subscription_id):
    """Leave one newsletter. Repeating it changes nothing. Returns the subscription or None."""
    subscriptions_unsubscribe(Subscription.objects.filter(id=subscription_id))
    return Subscription.objects.select_related("newsletter", "subscriber").filter(id=subscription_id).first()


def subscription_rejoin(*, subscription, consent_text, ip=None, user_agent=""):
    """Back on the list from the preference page. The link came by email, so the inbox is proven."""
    if subscription.status not in (Subscription.Status.UNSUBSCRIBED, Subscription.Status.PENDING):
        return False
    now = timezone.now()
    consent = _consent(form="preferences", consent_text=consent_text, ip=ip, user_agent=user_agent, now=now)
    changed = Subscription.objects.filter(
        id=subscription.id, status__in=[Subscription.Status.UNSUBSCRIBED, Subscription.Status.PENDING]
    ).update(
        status=Subscription.Status.ACTIVE, confirmed_at=now, unsubscribed_at=None, updated_at=now, **consent
    )
    return bool(changed)


DATA_EXPORT_INTERVAL = timedelta(hours=1)


def data_export_request(*, subscription):
    """Owe the fan an email with everything stored about them; at most one an hour."""
    recent = OwedEmail.objects.filter(
        subscription__subscriber_id=subscription.subscriber_id,
        kind=OwedEmail.Kind.DATA_EXPORT,
        created_at__gte=timezone.now() - DATA_EXPORT_INTERVAL,
    )
    with transaction.atomic():
        if recent.exists():
            return False
        owe_email(subscription.id, OwedEmail.Kind.DATA_EXPORT)
    return True


def subscriber_data(subscriber):
    """Everything this installation keeps about one address, for the fan to take away."""
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "created_at": subscriber.created_at.isoformat(),
        "subscriptions": [
            {
                "newsletter": subscription.newsletter.name,
                "newsletter_slug": subscription.newsletter.slug,
                "status": subscription.status,
                "tier": subscription.tier,
                "source": subscription.source,
                "signed_up_at": subscription.created_at.isoformat(),
                "consent": {
                    "form": subscription.consent_form,
                    "text": subscription.consent_text,
                    "at": subscription.consent_at.isoformat() if subscription.consent_at else None,
                    "ip": subscription.consent_ip,
                    "user_agent": subscription.consent_user_agent,
                    "confirmed_at": subscription.confirmed_at.isoformat()
                    if subscription.confirmed_at
                    else None,
                },
                "unsubscribed_at": subscription.unsubscribed_at.isoformat()
                if subscription.unsubscribed_at
                else None,
            }
            for subscription in subscriber.subscriptions.select_related("newsletter").order_by("created_at")
        ],
    }
