"""Everything a newsletter is, in one zip a creator can leave with (format_version 1):

    newsletter.json        settings, social and source links, format_version, exporter, time
    subscribers.csv        one row per subscription, every status (the "ownedaudience" format)
    events.csv             every subscription's history, by subscription then time
    suppressions.csv       the suppression list's rows for these addresses
    issues/<date>-<slug>.md  front matter (JSON-quoted values, valid YAML) + the Markdown body
    images/<path>          files under MEDIA_ROOT the issues link to (external URLs stay as they are)
    deliveries.csv         what each send did, from the delivery ledger (informational)
    members.csv            paying and comped members: plan, Stripe state, ids (informational)

On PostgreSQL the two big files stream out of `COPY (SELECT …) TO STDOUT` straight into their zip
entries; elsewhere an ORM iterator writes them. Nothing is held in memory, whatever the list size,
and on PostgreSQL every file is read from one snapshot.
"""

import csv
import io
import json
import re
import time
import zipfile
from datetime import UTC
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from billing.models import Membership
from delivery.progress import progress
from subscribers.models import Subscriber, Subscription, SubscriptionEvent, Suppression

FORMAT_VERSION = 1
EXPORTER = {"name": "ownedaudience", "version": "0.1.0"}
SETTINGS = (
    "name", "description", "language", "sender_name", "sender_email", "reply_to", "postal_address",
    "avatar_url", "consent_text", "welcome_subject", "welcome_body", "blocked_domains",
)
CONSENT = ("consent_form", "consent_text", "consent_at", "consent_ip", "consent_user_agent")
SUBSCRIBER_HEADER = (
    "email", "name", "status", "tier", "source", "created_at", "confirmed_at", "unsubscribed_at", *CONSENT,
)
EVENT_HEADER = (
    "email", "kind", "at", "from_status", "to_status", "from_tier", "to_tier", "actor", "detail", *CONSENT,
    "actor_user",
)
SUPPRESSION_HEADER = ("email", "reason", "detail", "created_at")
ISSUE_FIELDS = ("title", "slug", "status", "audience", "show_on_web", "scheduled_at", "sent_at", "created_at")
DELIVERY_HEADER = ("slug", "status", "recipients", "sent", "failed", "unknown", "skipped", "pending")
TIMES = {"created_at", "confirmed_at", "unsubscribed_at", "consent_at", "at", "scheduled_at", "sent_at"}


def iso(value):
    """ISO-8601 in UTC with a Z, microseconds without their trailing zeros (as PostgreSQL writes
    them, so both paths agree): 2024-01-09T14:00:03.512Z; "" for none."""
    if not value:
        return ""
    text = value.astimezone(UTC).replace(tzinfo=None).isoformat()
    return (text.rstrip("0").rstrip(".") if "." in text else text) + "Z"


def _sql_iso(column):
    # Half the cost of to_char(), which was a fifth of the export's time.
    return f"replace(({column} AT TIME ZONE 'UTC')::text, ' ', 'T') || 'Z'"


def _sql_columns(alias, names):
    """Each column of the header as SQL on `alias`: times in ISO UTC, addresses without their mask."""
    return [
        _sql_iso(f"{alias}.{name}") if name in TIMES else f"host({alias}.{name})" if name == "consent_ip"
        else f"{alias}.{name}"
        for name in names
    ]


def _select(columns, header):
    return "SELECT " + ", ".join(f'{column} AS "{name}"' for column, name in zip(columns, header))


def _entry(zf, name):
    return zf.open(name, "w", force_zip64=True)


def _copy(zf, name, sql):
    """Stream a query's CSV (with its header) from PostgreSQL into a zip entry; returns the rows."""
    with connection.cursor() as wrapper, _entry(zf, name) as out:
        cursor = wrapper.cursor  # psycopg's own
        with cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            buffer = bytearray()
            for data in copy:  # a row at a time: handed to the zip a megabyte at a time
                buffer += data
                if len(buffer) >= 1 << 20:
                    out.write(buffer)
                    buffer.clear()
            out.write(buffer)
        return cursor.rowcount


def _write_rows(zf, name, header, rows):
    """The same CSV from Python rows; returns how many."""
    count = 0
    with _entry(zf, name) as out, io.TextIOWrapper(out, encoding="utf-8", newline="") as text:
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([iso(value) if hasattr(value, "astimezone") else "" if value is None else value
                             for value in row])
            count += 1
    return count


def _subscribers(zf, newsletter):
    if connection.vendor == "postgresql":
        columns = ["p.email", "p.name", *_sql_columns("s", SUBSCRIBER_HEADER[2:])]
        return _copy(zf, "subscribers.csv", (
            f"{_select(columns, SUBSCRIBER_HEADER)}"
            f" FROM {Subscription._meta.db_table} s JOIN {Subscriber._meta.db_table} p ON p.id = s.subscriber_id"
            f" WHERE s.newsletter_id = {int(newsletter.pk)} ORDER BY s.id"
        ))
    rows = (Subscription.objects.filter(newsletter=newsletter).order_by("id")
            .values_list("subscriber__email", "subscriber__name", *SUBSCRIBER_HEADER[2:]).iterator(chunk_size=5000))
    return _write_rows(zf, "subscribers.csv", SUBSCRIBER_HEADER, rows)


def _events(zf, newsletter):
    User = get_user_model()
    username = User._meta.get_field(User.USERNAME_FIELD)
    if connection.vendor == "postgresql":
        who = (f"CASE WHEN e.actor_user_id IS NOT NULL THEN (SELECT u.{username.column} FROM {User._meta.db_table} u"
               f" WHERE u.{User._meta.pk.column} = e.actor_user_id) END")  # looked up only for the few events with one
        columns = ["p.email", *_sql_columns("e", EVENT_HEADER[1:-1]), who]
        return _copy(zf, "events.csv", (
            f"{_select(columns, EVENT_HEADER)}"
            f" FROM {SubscriptionEvent._meta.db_table} e"
            f" JOIN {Subscription._meta.db_table} s ON s.id = e.subscription_id"
            f" JOIN {Subscriber._meta.db_table} p ON p.id = s.subscriber_id"
            f" WHERE s.newsletter_id = {int(newsletter.pk)} ORDER BY e.subscription_id, e.at, e.id"
        ))
    rows = (SubscriptionEvent.objects.filter(subscription__newsletter=newsletter)
            .order_by("subscription_id", "at", "id")
            .values_list("subscription__subscriber__email", *EVENT_HEADER[1:-1], f"actor_user__{username.name}")
            .iterator(chunk_size=5000))
    return _write_rows(zf, "events.csv", EVENT_HEADER, rows)


def _suppressions(zf, newsletter):
    addresses = Subscription.objects.filter(newsletter=newsletter).values(address=Lower("subscriber__email"))
    rows = (Suppression.objects.annotate(address=Lower("email")).filter(address__in=addresses)
            .order_by("id").values_list(*SUPPRESSION_HEADER))
    return _write_rows(zf, "suppressions.csv", SUPPRESSION_HEADER, rows.iterator(chunk_size=5000))


def front_matter_value(value):
    """A YAML value that JSON also reads: null, true/false, a double-quoted string."""
    if value is None:
        return "null"
    return json.dumps(iso(value) if hasattr(value, "astimezone") else value, ensure_ascii=False)


def issue_path(issue):
    return f"issues/{(issue.sent_at or issue.created_at).astimezone(UTC):%Y-%m-%d}-{issue.slug}.md"


def _issues(zf, issues):
    for issue in issues:
        lines = [f"{name}: {front_matter_value(getattr(issue, name))}" for name in ISSUE_FIELDS]
        zf.writestr(issue_path(issue), "---\n" + "\n".join(lines) + "\n---\n" + issue.body_markdown)
    return len(issues)


def media_references(body):
    """Paths under MEDIA_ROOT of the files a body links to on this site (relative or on SITE_URL)."""
    media_url = re.escape(settings.MEDIA_URL)
    site = urlsplit(settings.SITE_URL).netloc
    for match in re.finditer(rf"""(?:(?<=[\s("'=<\[])|^)(https?://[^/\s"'<>()]+)?({media_url}[^\s"'<>()]+)""",
                             body, re.MULTILINE):
        if match[1] and urlsplit(match[1]).netloc != site:
            continue  # another site's /media/
        relative = unquote(urlsplit(match[2]).path)[len(settings.MEDIA_URL):]
        root = Path(settings.MEDIA_ROOT).resolve()
        path = (root / relative).resolve()
        if path.is_relative_to(root) and path.is_file():
            yield path.relative_to(root).as_posix(), path


def _images(zf, issues):
    found = {}
    for issue in issues:
        found.update(media_references(issue.body_markdown))
    for relative, path in sorted(found.items()):
        zf.write(path, f"images/{relative}")
    return len(found)


def _deliveries(zf, issues):
    rows = []
    for issue in issues:
        counts = progress(issue.pk)
        in_progress = sum(counts.get(status, 0) for status in ("pending", "claimed", "sending"))
        rows.append([issue.slug, issue.status, sum(counts.values()), *(counts.get(status, 0) for status in (
            "sent", "failed", "unknown", "skipped")), in_progress])
    _write_rows(zf, "deliveries.csv", DELIVERY_HEADER, rows)


def newsletter_settings(newsletter):
    return {
        "slug": newsletter.slug,
        **{name: getattr(newsletter, name) for name in SETTINGS},
        "created_at": iso(newsletter.created_at),
        "social_links": list(newsletter.social_links.order_by("position", "id").values("label", "url", "position")),
        "source_links": list(newsletter.source_links.order_by("code").values("source", "code", "visits")),
    }


MEMBER_HEADER = ("email", "source", "plan", "amount", "currency", "interval", "status", "current_period_end",
                 "cancel_at_period_end", "comp_until", "ended_at", "stripe_customer_id", "stripe_subscription_id",
                 "created_at")


def _members(zf, newsletter):
    rows = (Membership.objects.filter(subscription__newsletter=newsletter).order_by("id").values_list(
        "subscription__subscriber__email", "source", "plan__name", "plan__amount", "plan__currency", "plan__interval",
        "status", "current_period_end", "cancel_at_period_end", "comp_until", "ended_at", "stripe_customer_id",
        "stripe_subscription_id", "created_at",
    ))
    return _write_rows(zf, "members.csv", MEMBER_HEADER, rows.iterator(chunk_size=2000))


def export_newsletter(newsletter, out):
    """Write the newsletter's export zip to `out` (a path or a binary file object); returns counts."""
    started = time.monotonic()
    outermost = not connection.in_atomic_block
    with transaction.atomic(), zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # every file from one snapshot
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if connection.vendor == "postgresql":  # sorts of a big list in memory; JIT only slows these scans
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL work_mem = '128MB'; SET LOCAL jit = off; SET LOCAL datestyle = 'ISO'")
        counts = {"subscribers": _subscribers(zf, newsletter), "events": _events(zf, newsletter)}
        counts["suppressions"] = _suppressions(zf, newsletter)
        issues = list(newsletter.issues.order_by("created_at", "id"))
        counts["issues"] = _issues(zf, issues)
        counts["images"] = _images(zf, issues)
        _deliveries(zf, issues)
        counts["members"] = _members(zf, newsletter)
        zf.writestr("newsletter.json", json.dumps({
            "format_version": FORMAT_VERSION, "exporter": EXPORTER, "exported_at": iso(timezone.now()),
            "site_url": settings.SITE_URL, "media_url": settings.MEDIA_URL, **newsletter_settings(newsletter),
            "counts": counts,
        }, ensure_ascii=False, indent=2))
    return {**counts, "seconds": round(time.monotonic() - started, 2)}
