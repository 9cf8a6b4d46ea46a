"""The one writer's set-based form, for imports: a whole file's subscriptions in a few statements.

The caller (portability.importing) puts one row per distinct address in a temporary table with
MERGED_COLUMNS. Like subscription_change(), this writes state and its events together:

- a new subscription gets its first event, kind "import", actor "import", who ran it, and on an
  active one the creator's attestation that the address opted in on the old platform;
- an existing subscription only ever loses mailability (active or pending here, not active in
  the file: it takes the file's status) or gains a paid or comped tier; consent is never
  upgraded. So a second run of the same file writes nothing.
"""

from django.db import connection, transaction
from django.db.models.expressions import RawSQL

from .models import Subscriber, Subscription, SubscriptionEvent
from .services import subscription_change

MERGED_COLUMNS = ("key", "email", "name", "source", "status", "tier", "created_at", "confirmed_at", "unsubscribed_at",
                  "consent_at", "consent_ip", "consent_form", "consent_text", "consent_user_agent", "detail")
S = Subscription.Status
_CHANGE_KIND = {
    S.UNSUBSCRIBED: SubscriptionEvent.Kind.UNSUBSCRIBE,
    S.BOUNCED: SubscriptionEvent.Kind.BOUNCE,
    S.COMPLAINED: SubscriptionEvent.Kind.COMPLAINT,
    S.PENDING: SubscriptionEvent.Kind.IMPORT,
}


def subscriptions_import(table, *, newsletter_id, consent_form, attestation, now, actor_user=None):
    """Write `table`'s rows into the newsletter's audience; returns {"created": n, "changed": n}."""
    q = connection.ops.quote_name
    subscriber, subscription, event = (q(m._meta.db_table) for m in (Subscriber, Subscription, SubscriptionEvent))
    ids = f"{table}_ids"
    user_id = actor_user.pk if actor_user else None
    at = connection.ops.adapt_datetimefield_value(now)  # SQLite keeps naive UTC text
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"""
            INSERT INTO {subscriber} (email, name, created_at)
            SELECT email, name, %s FROM {table} ON CONFLICT DO NOTHING
        """, [at])
        cursor.execute(f"DROP TABLE IF EXISTS {ids}")
        cursor.execute(f"""
            CREATE TEMP TABLE {ids} AS
            SELECT m.*, s.id AS subscriber_id, x.id AS subscription_id, x.status AS current_status,
                   x.tier AS current_tier
            FROM {table} m JOIN {subscriber} s ON lower(s.email) = lower(m.email)
            LEFT JOIN {subscription} x ON x.subscriber_id = s.id AND x.newsletter_id = %s
        """, [newsletter_id])
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {ids}")  # temporary tables get no statistics otherwise
        # New subscriptions: the file's status, tier, dates and consent; the attestation is the
        # consent record of an active one that brings none of its own. Then their first events.
        insert = f"""
            INSERT INTO {subscription} (subscriber_id, newsletter_id, status, tier, source, created_at, updated_at,
                confirmed_at, unsubscribed_at, consent_form, consent_text, consent_at, consent_ip,
                consent_user_agent)
            SELECT subscriber_id, %s, status, tier, source, COALESCE(created_at, %s), %s, confirmed_at,
                unsubscribed_at, CASE WHEN consent_form <> '' THEN consent_form ELSE %s END,
                CASE WHEN consent_text <> '' THEN consent_text WHEN status = 'active' THEN %s ELSE '' END,
                COALESCE(consent_at, created_at), consent_ip, consent_user_agent
            FROM {ids} WHERE subscription_id IS NULL
            ON CONFLICT DO NOTHING
        """
        insert_params = [newsletter_id, at, at, consent_form, attestation]
        events = f"""
            INSERT INTO {event} (subscription_id, kind, at, from_status, to_status, from_tier, to_tier, actor,
                actor_user_id, detail, consent_form, consent_text, consent_at, consent_ip, consent_user_agent)
            SELECT x.id, %s, %s, '', x.status, '', x.tier, 'import', %s, i.detail, %s,
                CASE WHEN x.status = 'active' THEN %s ELSE '' END, x.consent_at, x.consent_ip, x.consent_user_agent
        """
        events_params = [SubscriptionEvent.Kind.IMPORT, at, user_id, consent_form, attestation]
        if connection.vendor == "postgresql":
            # One statement: the events join the rows the insert returns, so only rows it made get one.
            cursor.execute(f"""
                WITH x AS ({insert} RETURNING id, subscriber_id, status, tier, consent_at, consent_ip,
                                             consent_user_agent)
                {events} FROM x JOIN {ids} i ON i.subscriber_id = x.subscriber_id
            """, insert_params + events_params)
            created = cursor.rowcount
        else:
            cursor.execute(insert, insert_params)
            created = cursor.rowcount
            # Found again by the moment written: a row made by another writer meanwhile gets none.
            cursor.execute(f"""{events}
                FROM {ids} i JOIN {subscription} x ON x.subscriber_id = i.subscriber_id AND x.newsletter_id = %s
                WHERE i.subscription_id IS NULL AND x.updated_at = %s
            """, events_params + [newsletter_id, at])
        changed = _existing(ids, actor_user, consent_form, now)
        cursor.execute(f"DROP TABLE {ids}")
    return {"created": created, "changed": changed}


def _existing(ids, actor_user, detail, now):
    """Existing subscriptions: through subscription_change(), a statement per target status or tier."""
    changed = 0
    for status, kind in _CHANGE_KIND.items():
        rows = RawSQL(
            f"SELECT subscription_id FROM {ids} WHERE subscription_id IS NOT NULL AND status = %s "
            "AND current_status IN ('active', 'pending') AND current_status <> status", [status],
        )
        fields = {"unsubscribed_at": now} if status == S.UNSUBSCRIBED else None
        changed += len(subscription_change(
            Subscription.objects.filter(id__in=rows), kind=kind, actor="import", actor_user=actor_user,
            status=status, from_statuses=[S.ACTIVE, S.PENDING], detail=f"{detail}: {status} in the file",
            fields=fields,
        ))
    for tier in Subscription.Tier.MEMBERS:
        rows = RawSQL(
            f"SELECT subscription_id FROM {ids} WHERE subscription_id IS NOT NULL AND tier = %s "
            "AND current_tier = 'free'", [tier],
        )
        changed += len(subscription_change(
            Subscription.objects.filter(id__in=rows, tier=Subscription.Tier.FREE), kind=SubscriptionEvent.Kind.TIER,
            actor="import", actor_user=actor_user, tier=tier, detail=f"{detail}: {tier} in the file",
        ))
    return changed

