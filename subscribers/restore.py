"""A newsletter's audience put back from an export, exactly as it was: every subscription with its
status, tier, source, dates and consent, and its history verbatim (portability/restore.py reads the
zip and calls this).

It writes rows without the one writer on purpose: nothing changes state here, the records and
events of another installation are copied as they are, and the copy appends no event of its own.
Like the bulk imports it sends no `subscriptions_changed`. Set-based and in chunks, so a list of
a million keeps memory flat; addresses erased here (ErasedAddress) stay out.
"""

from itertools import islice

from django.db import connection
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from .addresses import erased_digest, normalize_email
from .models import ErasedAddress, Subscriber, Subscription, SubscriptionEvent, Suppression

CHUNK = 5000
BATCH = 1000  # rows per INSERT: 14 columns stay far below PostgreSQL's 65,535 parameters
SUBSCRIPTION_FIELDS = (
    "subscriber", "newsletter", "status", "tier", "source", "created_at", "updated_at", "confirmed_at",
    "unsubscribed_at", "consent_form", "consent_text", "consent_at", "consent_ip", "consent_user_agent",
)
EVENT_FIELDS = (
    "kind", "at", "from_status", "to_status", "from_tier", "to_tier", "actor", "actor_user_id", "detail",
    "consent_form", "consent_text", "consent_at", "consent_ip", "consent_user_agent",
)


def _chunks(rows, size):
    rows = iter(rows)
    while chunk := list(islice(rows, size)):
        yield chunk


def _insert(model, names, rows, returning=()):
    """INSERT … ON CONFLICT DO NOTHING of the values as given: bulk_create would replace the
    auto_now_add dates with today's. Returns the `returning` columns of the rows inserted."""
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(name) for name in names]
    columns = ", ".join(quote(field.column) for field in fields)
    one_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    back = f" RETURNING {', '.join(map(quote, returning))}" if returning else ""
    inserted = []
    with connection.cursor() as cursor:
        for batch in _chunks(rows, BATCH):
            params = [field.get_db_prep_save(row[field.name], connection) for row in batch for field in fields]
            cursor.execute(
                f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join([one_row] * len(batch))}"
                f" ON CONFLICT DO NOTHING{back}", params,
            )
            inserted.extend(cursor.fetchall() if returning else [])
    return inserted


def _check(value, allowed, what, email):
    if value not in allowed:
        raise ValueError(f"{email}: unknown {what} {value!r}")


def subscriptions_restore(newsletter_id, subscriptions, events, *, suppressions=()):
    """Subscriptions (dicts: email, name, the Subscription fields) and their events (dicts: email,
    the SubscriptionEvent fields, actor_user_id) of one newsletter, inserted as given. Returns counts."""
    counts = {"subscriptions": 0, "events": 0, "erased": 0, "duplicates": 0, "events_left_out": 0}
    now = timezone.now()
    for chunk in _chunks(subscriptions, CHUNK):
        rows = {}
        for row in chunk:
            email = normalize_email(row["email"])
            _check(row["status"], Subscription.Status.values, "status", email)
            _check(row["tier"], Subscription.Tier.values, "tier", email)
            rows.setdefault(email.lower(), {**row, "email": email})
        counts["duplicates"] += len(chunk) - len(rows)
        erased = set(ErasedAddress.objects.filter(
            Q(newsletter_id=newsletter_id) | Q(newsletter__isnull=True),
            digest__in=[erased_digest(row["email"]) for row in rows.values()],
        ).values_list("digest", flat=True))
        if erased:
            kept = {key: row for key, row in rows.items() if erased_digest(row["email"]) not in erased}
            counts["erased"] += len(rows) - len(kept)
            rows = kept
        Subscriber.objects.bulk_create(
            [Subscriber(email=row["email"], name=(row.get("name") or "")[:200]) for row in rows.values()],
            ignore_conflicts=True, batch_size=BATCH,
        )
        ids = dict(Subscriber.objects.annotate(address=Lower("email")).filter(address__in=list(rows))
                   .values_list("address", "id"))
        inserted = _insert(Subscription, SUBSCRIPTION_FIELDS, [
            {**row, "subscriber": ids[key], "newsletter": newsletter_id, "updated_at": row.get("updated_at") or now,
             "consent_ip": row.get("consent_ip") or None}
            for key, row in rows.items()
        ], returning=("id",))
        counts["subscriptions"] += len(inserted)
        counts["duplicates"] += len(rows) - len(inserted)
    for chunk in _chunks(events, CHUNK):
        addresses = {normalize_email(event["email"]).lower() for event in chunk}
        ids = dict(Subscription.objects.filter(newsletter_id=newsletter_id)
                   .annotate(address=Lower("subscriber__email")).filter(address__in=addresses)
                   .values_list("address", "id"))
        rows = []
        for event in chunk:
            subscription_id = ids.get(normalize_email(event["email"]).lower())
            if subscription_id is None:  # erased, or no such subscription in the file
                counts["events_left_out"] += 1
                continue
            _check(event["kind"], SubscriptionEvent.Kind.values, "event kind", event["email"])
            fields = {name: event.get(name) or "" for name in EVENT_FIELDS}
            fields.update(at=event["at"], actor_user_id=event.get("actor_user_id"),
                          consent_at=event.get("consent_at"), consent_ip=event.get("consent_ip") or None)
            rows.append(SubscriptionEvent(subscription_id=subscription_id, **fields))
        SubscriptionEvent.objects.bulk_create(rows, batch_size=BATCH)
        counts["events"] += len(rows)
    for chunk in _chunks(suppressions, CHUNK):
        _insert(Suppression, ("email", "reason", "detail", "created_at"), [
            {**row, "email": normalize_email(row["email"]), "created_at": row.get("created_at") or now}
            for row in chunk
        ])
    return counts
