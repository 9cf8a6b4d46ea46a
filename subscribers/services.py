"""State changes for the audience."""

from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

from .addresses import normalize_email
from .models import OwedEmail, Subscriber, Subscription, SubscriptionEvent
from .nudge import nudge_after_commit
from .signals import Change, subscriptions_changed


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


def subscription_for_checkout(*, newsletter, email, source="checkout"):
    """The fan's subscription to pay for: theirs, or a new pending one with no confirmation email
    (paying is the consent, recorded when it completes; the person's own act, like a signup)."""
    with transaction.atomic():
        subscription, created = Subscription.objects.get_or_create(
            subscriber=subscriber_ensure(email=email), newsletter=newsletter,
            defaults={"status": Subscription.Status.PENDING, "source": source[:100], "consent_form": "checkout"},
        )
        if created:
            _subscription_created(subscription.id, kind=SubscriptionEvent.Kind.SIGNUP, actor="fan", consent={},
                                  status=subscription.status, tier=subscription.tier, now=subscription.created_at,
                                  detail="started a checkout")
    return subscription


def subscription_exists(*, email, newsletter):
    return Subscription.objects.filter(
        subscriber__email__iexact=normalize_email(email), newsletter=newsletter
    ).exists()


# --- The one writer of a subscription's status and tier ------------------------------------------


def subscription_change(subscriptions, *, kind, actor, status=None, tier=None, from_statuses=None,
                        actor_user=None, detail="", consent=None, fields=None):
    """Every change of a subscription's status or tier goes through here, and leaves a
    SubscriptionEvent per subscription changed, in the same transaction.

    `subscriptions`: an id or a queryset. Rows whose status is not in `from_statuses` (when
    given) are left alone, as are rows this would not change (same status and tier, no new
    consent). `consent` (from _consent()) becomes the subscription's current consent record and
    is kept on the event, so an earlier record is never lost. `fields`: other columns set on the
    rows changed (dates, source). Returns the ids changed.
    """
    now = timezone.now()
    queryset = subscriptions if isinstance(subscriptions, QuerySet) else Subscription.objects.filter(pk=subscriptions)
    if from_statuses is not None:
        queryset = queryset.filter(status__in=list(from_statuses))
    with transaction.atomic():
        rows = list(queryset.order_by().select_for_update(of=("self",)).values_list("id", "status", "tier"))
        rows = [
            row for row in rows
            if consent or (status is not None and row[1] != status) or (tier is not None and row[2] != tier)
        ]
        if not rows:
            return []
        ids = [row[0] for row in rows]
        changes = {"updated_at": now, **(fields or {}), **(consent or {})}
        if status is not None:
            changes["status"] = status
        if tier is not None:
            changes["tier"] = tier
        Subscription.objects.filter(id__in=ids).update(**changes)
        SubscriptionEvent.objects.bulk_create(
            [
                SubscriptionEvent(
                    subscription_id=subscription_id, kind=kind, at=now, actor=actor, actor_user=actor_user,
                    detail=detail, from_status=old_status, to_status=status or old_status, from_tier=old_tier,
                    to_tier=tier or old_tier, **(consent or {}),
                )
                for subscription_id, old_status, old_tier in rows
            ],
            batch_size=1000,
        )
        subscriptions_changed.send(Subscription, changes=[
            Change(subscription_id, kind, old_status, status or old_status, old_tier, tier or old_tier, actor)
            for subscription_id, old_status, old_tier in rows
        ])
    return ids


def _subscription_created(subscription_id, *, kind, actor, status, tier, consent, now, actor_user=None, detail=""):
    """The first event of a subscription the writer's callers just inserted."""
    SubscriptionEvent.objects.create(
        subscription_id=subscription_id, kind=kind, at=now, actor=actor, actor_user=actor_user, detail=detail,
        to_status=status, to_tier=tier, **consent,
    )
    subscriptions_changed.send(Subscription, changes=[Change(subscription_id, kind, "", status, "", tier, actor)])


def subscriptions_unsubscribe(queryset, *, actor="fan", actor_user=None, detail=""):
    """Unsubscribe every subscription in `queryset` that is not already out; returns how many."""
    statuses = [value for value in Subscription.Status.values if value != Subscription.Status.UNSUBSCRIBED]
    return len(subscription_change(
        queryset, kind=SubscriptionEvent.Kind.UNSUBSCRIBE, actor=actor, actor_user=actor_user, detail=detail,
        status=Subscription.Status.UNSUBSCRIBED, from_statuses=statuses, fields={"unsubscribed_at": timezone.now()},
    ))


def subscription_add_by_creator(*, newsletter, email, user, name="", source="", attested=False):
    """A creator puts an address on their list by hand.

    Without `attested` it is an invitation: the subscription is pending and the address is sent a
    confirmation email; nobody is mailed an issue before they say yes. With `attested` the creator
    declares that this address already opted in to this list (on their old platform, on paper):
    active at once, and the declaration, who made it and when, is its consent record. Both are
    recorded as the subscription's first event. Returns the subscription. An address erased from
    this newsletter or everywhere is refused either way (ValidationError): only the person may come back.
    """
    from .erasure import refuse_erased

    refuse_erased(email, newsletter.pk)
    now = timezone.now()
    who = user.get_username()
    if attested:
        kind, status = SubscriptionEvent.Kind.IMPORT, Subscription.Status.ACTIVE
        consent = _consent(form="attested", ip=None, user_agent="", now=now, consent_text=(
            f"{who} declared that this address opted in to {newsletter.name} before it was added by hand."
        ))
    else:
        kind, status = SubscriptionEvent.Kind.INVITE, Subscription.Status.PENDING
        # Not consent yet: the fan gives it, or not, by confirming.
        consent = {"consent_form": "invitation", "consent_text": "", "consent_at": None, "consent_ip": None,
                   "consent_user_agent": ""}
    with transaction.atomic():
        subscriber = subscriber_ensure(email=email, name=name)
        subscription = Subscription.objects.create(
            subscriber=subscriber, newsletter=newsletter, status=status, tier=Subscription.Tier.FREE,
            source=source[:100], confirmed_at=now if attested else None, **consent,
        )
        _subscription_created(subscription.id, kind=kind, actor="creator", actor_user=user, status=status,
                              tier=Subscription.Tier.FREE, consent=consent, now=now, detail="added by hand")
        if not attested:
            owe_email(subscription.id, OwedEmail.Kind.CONFIRMATION)
    return subscription


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
        # The common case, a new address, in one statement; what listens to the audience
        # (outgoing webhooks) writes in the same transaction.
        with transaction.atomic():
            subscription_id = _signup_new_address(newsletter, email, name, source[:100], consent, now)
            if subscription_id is not None:
                subscriptions_changed.send(Subscription, changes=[Change(
                    subscription_id, SubscriptionEvent.Kind.SIGNUP, "", Subscription.Status.PENDING,
                    "", Subscription.Tier.FREE, "fan",
                )])
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
_OWED_COLUMNS = ("kind", "status", "attempts", "due_at", "claim", "message_id", "error", "created_at")
_EVENT_COLUMNS = (
    "kind",
    "at",
    "from_status",
    "to_status",
    "from_tier",
    "to_tier",
    "actor",
    "detail",
    "consent_form",
    "consent_text",
    "consent_at",
    "consent_ip",
    "consent_user_agent",
)
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
        event_columns, event_values = columns(SubscriptionEvent, _EVENT_COLUMNS)
        _new_address_sql = f"""
            WITH new_subscriber AS (
                INSERT INTO {quote(Subscriber._meta.db_table)} (email, name, created_at)
                VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING id
            ), new_subscription AS (
                INSERT INTO {quote(Subscription._meta.db_table)} (subscriber_id, {subscription_columns})
                SELECT id, {subscription_values} FROM new_subscriber RETURNING id
            ), first_event AS (
                INSERT INTO {quote(SubscriptionEvent._meta.db_table)} (subscription_id, {event_columns})
                SELECT id, {event_values} FROM new_subscription
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
        "message_id": "",
        "error": "",
        "created_at": now,
    }
    event = {
        "kind": SubscriptionEvent.Kind.SIGNUP,
        "at": now,
        "from_status": "",
        "to_status": Subscription.Status.PENDING,
        "from_tier": "",
        "to_tier": Subscription.Tier.FREE,
        "actor": "fan",
        "detail": source,
        **consent,
    }
    params = [
        email,
        name,
        now,
        *(subscription[name] for name in _SUBSCRIPTION_COLUMNS),
        *(event[name] for name in _EVENT_COLUMNS),
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
        _subscription_created(subscription_id, kind=SubscriptionEvent.Kind.SIGNUP, actor="fan", detail=source,
                              status=Subscription.Status.PENDING, tier=Subscription.Tier.FREE, consent=consent, now=now)
        owe_email(subscription_id, OwedEmail.Kind.CONFIRMATION)
        return subscription_id, SignupOutcome.NEW

    subscription = Subscription.objects.select_for_update().get(
        subscriber_id=subscriber_id, newsletter=newsletter
    )
    if subscription.status == Subscription.Status.ACTIVE:
        return subscription.id, SignupOutcome.ALREADY_ACTIVE
    if subscription.status in (Subscription.Status.BOUNCED, Subscription.Status.COMPLAINED):
        return subscription.id, SignupOutcome.SUPPRESSED
    if subscription.status == Subscription.Status.UNSUBSCRIBED:
        subscription_change(
            subscription.id, kind=SubscriptionEvent.Kind.REJOIN, actor="fan", detail=source,
            status=Subscription.Status.PENDING, consent=consent,
            fields={"source": source or subscription.source, "confirmed_at": None},
        )
        outcome = SignupOutcome.REJOINING
    else:  # still pending: the new consent record joins the history, a fresh email is owed
        subscription_change(subscription.id, kind=SubscriptionEvent.Kind.SIGNUP, actor="fan", detail=source,
                            consent=consent)
        outcome = SignupOutcome.RESENT
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
        subscription_change(
            subscription.id, kind=SubscriptionEvent.Kind.CONFIRM, actor="fan", status=Subscription.Status.ACTIVE,
            from_statuses=[Subscription.Status.PENDING],
            fields={"confirmed_at": timezone.now(), "unsubscribed_at": None},
        )
        subscription.refresh_from_db()
        newsletter = subscription.newsletter
        if newsletter.welcome_subject.strip() and newsletter.welcome_body.strip():
            owe_email(subscription.id, OwedEmail.Kind.WELCOME)
    return subscription, True


def subscription_unsubscribe(*, subscription_id, detail=""):
    """The fan leaves one newsletter. Repeating it changes nothing. Returns the subscription or None."""
    subscriptions_unsubscribe(Subscription.objects.filter(id=subscription_id), actor="fan", detail=detail)
    return Subscription.objects.select_related("newsletter", "subscriber").filter(id=subscription_id).first()


def subscription_rejoin(*, subscription, consent_text, ip=None, user_agent=""):
    """Back on the list from the preference page. The link came by email, so the inbox is proven."""
    if subscription.status not in (Subscription.Status.UNSUBSCRIBED, Subscription.Status.PENDING):
        return False
    now = timezone.now()
    consent = _consent(form="preferences", consent_text=consent_text, ip=ip, user_agent=user_agent, now=now)
    changed = subscription_change(
        subscription.id, kind=SubscriptionEvent.Kind.REJOIN, actor="fan", status=Subscription.Status.ACTIVE,
        from_statuses=[Subscription.Status.UNSUBSCRIBED, Subscription.Status.PENDING], consent=consent,
        fields={"confirmed_at": now, "unsubscribed_at": None},
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
                "history": [_event_data(event) for event in subscription.events.all()],
            }
            for subscription in subscriber.subscriptions.select_related("newsletter")
            .prefetch_related("events").order_by("created_at")
        ],
    }


def _event_data(event):
    return {
        "kind": event.kind,
        "at": event.at.isoformat(),
        "status": [event.from_status, event.to_status],
        "tier": [event.from_tier, event.to_tier],
        "by": event.actor,
        "detail": event.detail,
        "consent": {
            "form": event.consent_form,
            "text": event.consent_text,
            "at": event.consent_at.isoformat() if event.consent_at else None,
            "ip": event.consent_ip,
            "user_agent": event.consent_user_agent,
        } if event.consent_at else None,
    }
