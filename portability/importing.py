"""A subscriber file from another platform into a newsletter's audience, streamed.

Memory stays flat whatever the file's size: the parsers (formats.py) yield one row at a time,
the rows go into a temporary table in chunks (COPY on PostgreSQL), and the de-duplication, the
counts and the writes are set-based SQL. Only the merge and the write run in one transaction,
so a failed import leaves the audience as it was.

1. read: every valid row into `oa_import_rows`; every rejected one into ImportRejection with
   its line number and reason; progress (bytes of the file) on the Import row as it goes.
2. merge: one row per address (the email key: trimmed, lower-cased), the worst status and the
   best tier of its rows winning, so consent is never upgraded; addresses erased here at the
   person's request are rejected.
3. count what the file holds, then write through subscribers.importing, the one writer's
   set-based form, which records each new subscription's first event with the attestation.
"""

import os
import time

from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from subscribers.addresses import normalize_email
from subscribers.importing import subscriptions_import
from subscribers.models import ErasedAddress

from . import formats
from .models import Import, ImportRejection

ROWS = "oa_import_rows"
MERGED = "oa_import_merged"
CHUNK = 50_000
STATUS_RANK = {"active": 0, "pending": 1, "unsubscribed": 2, "bounced": 3, "complained": 4}
TIER_RANK = {"free": 0, "comped": 1, "paid": 2}
PLATFORMS = {
    "substack": "Substack", "substack_dashboard": "Substack", "mailchimp": "Mailchimp", "ghost": "Ghost",
    "kit": "Kit", "buttondown": "Buttondown", "beehiiv": "beehiiv", "ownedaudience": "ownedaudience",
}
_COLUMNS = (
    "line", "key", "email", "name", "source", "rank", "tier_rank", "created_at", "confirmed_at",
    "unsubscribed_at", "consent_at", "consent_ip", "consent_form", "consent_text", "consent_user_agent", "note",
)


class ImportFailed(Exception):
    """The file cannot be imported as it is; the message says why, for the creator."""


def attestation_text(job, platform):
    who = job.created_by.get_username() if job.created_by else "the operator (manage.py import_subscribers)"
    return (
        f"{who} attested on {timezone.now():%Y-%m-%d} that the active addresses of {job.file_name} "
        f"opted in to {job.newsletter.name} on {platform}."
    )


def run(job, stream):
    """Import `stream` (a binary file) for `job` (an Import row); returns the Import, updated."""
    started = time.monotonic()
    # A task run again after its worker died starts over: the audience was not touched (the
    # write is one transaction), only the report of the first try is dropped.
    ImportRejection.objects.filter(job=job).delete()
    Import.objects.filter(pk=job.pk).update(
        status=Import.Status.READING, started_at=timezone.now(), bytes_total=_size(stream), error="",
        rejected=0, rows_read=0, bytes_read=0,
    )
    job.refresh_from_db()
    try:
        with connection.cursor() as cursor:
            _create_rows_table(cursor)
            try:
                detected = _read(job, stream, cursor)
                job.timings = {"read": time.monotonic() - started}
                Import.objects.filter(pk=job.pk).update(status=Import.Status.WRITING, detected_format=detected)
                platform = PLATFORMS.get(detected, detected)
                with transaction.atomic():
                    if connection.vendor == "postgresql":
                        # The merge and the joins hash a whole file: in memory, not spilled in batches.
                        cursor.execute("SET LOCAL work_mem = '128MB'")
                    _merge(job, cursor, platform)
                    counts = _counts(cursor)
                    job.timings["merge"] = time.monotonic() - started - job.timings["read"]
                    if counts["active"] and not job.attested:
                        raise ImportFailed(
                            "The file has active addresses: confirm that they opted in on the old platform "
                            "(the attestation) to import them."
                        )
                    written = subscriptions_import(
                        MERGED, newsletter_id=job.newsletter_id, consent_form=f"import:{detected}",
                        attestation=attestation_text(job, platform) if job.attested else "",
                        now=timezone.now(), actor_user=job.created_by,
                    )
            finally:
                cursor.execute(f"DROP TABLE IF EXISTS {ROWS}")
                cursor.execute(f"DROP TABLE IF EXISTS {MERGED}")
    except (formats.FormatError, ImportFailed) as error:
        _fail(job, str(error))
        raise ImportFailed(str(error)) from error
    except Exception as error:
        _fail(job, f"The import stopped: {error.__class__.__name__}: {error}")
        raise
    Import.objects.filter(pk=job.pk).update(
        status=Import.Status.DONE, finished_at=timezone.now(), bytes_read=job.bytes_total or 0,
        **{key: counts[key] for key in ("active", "suppressed", "paid")},
        created=written["created"], changed=written["changed"],
    )
    timings = job.timings
    job.refresh_from_db()
    job.seconds = time.monotonic() - started
    job.timings = {**timings, "write": job.seconds - timings["read"] - timings["merge"]}
    return job


def _fail(job, message):
    Import.objects.filter(pk=job.pk).update(status=Import.Status.FAILED, error=message, finished_at=timezone.now())


def _size(stream):
    try:
        return os.fstat(stream.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        return getattr(stream, "size", 0) or 0


def _create_rows_table(cursor):
    pg = connection.vendor == "postgresql"
    if pg:
        _temp_buffers(cursor)
    when, ip = ("timestamptz", "inet") if pg else ("datetime", "char(39)")
    cursor.execute(f"DROP TABLE IF EXISTS {ROWS}")
    cursor.execute(f"""
        CREATE TEMP TABLE {ROWS} (
            line integer, key text, email text, name text, source text, rank smallint, tier_rank smallint,
            created_at {when}, confirmed_at {when}, unsubscribed_at {when}, consent_at {when}, consent_ip {ip},
            consent_form text, consent_text text, consent_user_agent text, note text
        )
    """)


def _temp_buffers(cursor):
    """A file's rows fit in the session's memory instead of going to disk 8 MB at a time; allowed
    only before the session's first temporary table (a worker's connection may have had one)."""
    try:
        with transaction.atomic():
            cursor.execute("SET temp_buffers = '256MB'")
    except DatabaseError:
        pass


def _read(job, stream, cursor):
    """Parse and stage every row; rejected rows go to the report. Returns the format found."""
    reader = formats.read(stream, format=job.format, name=job.file_name)
    chunk, rejected, rows_read = [], [], 0
    adapt = (lambda value: value) if connection.vendor == "postgresql" else connection.ops.adapt_datetimefield_value
    for record in reader:
        rows_read += 1
        if isinstance(record, formats.Rejected):
            rejected.append(ImportRejection(job=job, line=record.line, value=record.value[:254],
                                            reason=record.reason[:300]))
            continue
        email = record.email if record.email.isascii() else normalize_email(record.email)
        if len(email) > 254:
            rejected.append(ImportRejection(job=job, line=record.line, value=email[:254],
                                            reason="longer than 254 characters"))
            continue
        chunk.append((
            record.line, email.lower(), email, record.name[:200], record.source[:100],
            STATUS_RANK[record.status], TIER_RANK[record.tier], adapt(record.created_at),
            adapt(record.confirmed_at), adapt(record.unsubscribed_at), adapt(record.consent_at),
            record.consent_ip, record.consent_form[:100], record.consent_text, record.consent_user_agent[:500],
            record.note[:100],
        ))
        if len(chunk) >= CHUNK:
            _stage(cursor, chunk)
            chunk = []
            _progress(job, stream, rows_read, rejected)
    _stage(cursor, chunk)
    _progress(job, stream, rows_read, rejected)
    return getattr(reader, "format", None) or job.format


def _progress(job, stream, rows_read, rejected):
    if rejected:
        ImportRejection.objects.bulk_create(rejected, batch_size=5000)
        job.rejected += len(rejected)
        rejected.clear()
    try:
        position = stream.tell()
    except (OSError, ValueError, AttributeError):
        position = 0
    Import.objects.filter(pk=job.pk).update(bytes_read=position, rows_read=rows_read, rejected=job.rejected)


def _stage(cursor, chunk):
    if not chunk:
        return
    columns = ", ".join(_COLUMNS)
    if connection.vendor == "postgresql":
        with cursor.cursor.copy(f"COPY {ROWS} ({columns}) FROM STDIN") as copy:
            for row in chunk:
                copy.write_row(row)
    else:
        cursor.executemany(f"INSERT INTO {ROWS} ({columns}) VALUES ({', '.join(['%s'] * len(_COLUMNS))})", chunk)


def _merge(job, cursor, platform):
    """One row per address in MERGED; erased addresses reported and left out."""
    if connection.vendor == "postgresql":
        cursor.execute(f"ANALYZE {ROWS}")
    _reject_erased(job, cursor)
    cursor.execute(f"DROP TABLE IF EXISTS {MERGED}")
    statuses = " ".join(f"WHEN {rank} THEN '{status}'" for status, rank in STATUS_RANK.items())
    tiers = " ".join(f"WHEN {rank} THEN '{tier}'" for tier, rank in TIER_RANK.items())
    cursor.execute(f"""
        CREATE TEMP TABLE {MERGED} AS
        SELECT key, MAX(email) AS email, MAX(name) AS name, MAX(source) AS source,
            CASE MAX(rank) {statuses} END AS status, CASE MAX(tier_rank) {tiers} END AS tier,
            MIN(created_at) AS created_at, MAX(confirmed_at) AS confirmed_at,
            MAX(unsubscribed_at) AS unsubscribed_at, MIN(consent_at) AS consent_at,
            MAX(consent_ip) AS consent_ip, MAX(consent_form) AS consent_form, MAX(consent_text) AS consent_text,
            MAX(consent_user_agent) AS consent_user_agent,
            %s || CAST(MIN(line) AS text)
                || CASE WHEN MAX(note) <> '' THEN ' (' || MAX(note) || ')' ELSE '' END AS detail
        FROM {ROWS} GROUP BY key
    """, [f"{platform} file {job.file_name}, line "])
    if connection.vendor == "postgresql":
        cursor.execute(f"ANALYZE {MERGED}")  # temporary tables get no statistics otherwise


def _reject_erased(job, cursor):
    if not ErasedAddress.objects.filter(Q(newsletter_id=job.newsletter_id) | Q(newsletter__isnull=True)).exists():
        return
    if connection.vendor == "postgresql":
        digest = "encode(sha256(convert_to('ownedaudience-erased:' || r.key, 'UTF8')), 'hex')"
    else:
        digest = "SHA256('ownedaudience-erased:' || r.key)"  # Django registers SHA256 on SQLite
    table = ErasedAddress._meta.db_table
    match = f"""EXISTS (SELECT 1 FROM {table} e WHERE e.digest = {digest}
                 AND (e.newsletter_id IS NULL OR e.newsletter_id = %s))"""
    cursor.execute(f"""
        INSERT INTO {ImportRejection._meta.db_table} (job_id, line, value, reason)
        SELECT %s, r.line, r.email, 'erased here at the person''s request' FROM {ROWS} r WHERE {match}
    """, [job.pk, job.newsletter_id])
    job.rejected += cursor.rowcount
    Import.objects.filter(pk=job.pk).update(rejected=job.rejected)
    cursor.execute(f"DELETE FROM {ROWS} WHERE key IN (SELECT r.key FROM {ROWS} r WHERE {match})", [job.newsletter_id])


def _counts(cursor):
    cursor.execute(f"""
        SELECT COALESCE(SUM(CASE WHEN status = 'active' THEN 1 ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN status <> 'active' THEN 1 ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN status = 'active' AND tier <> 'free' THEN 1 ELSE 0 END), 0)
        FROM {MERGED}
    """)
    active, suppressed, paid = cursor.fetchone()
    return {"active": int(active), "suppressed": int(suppressed), "paid": int(paid)}
