"""The round trip: an export zip (exporting.py) put back into an installation where its slug is free.

The newsletter from newsletter.json (its social and source links, an owner added), the audience
and its history exactly (subscribers.restore), the suppressions, the issues (sent ones sent at
their dates, drafts as drafts; none is sent again) and the images under MEDIA_ROOT. No Delivery
row is invented: deliveries.csv is informational.
"""

import csv
import io
import json
import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from newsletters.models import Issue, Newsletter, SocialLink
from subscribers.models import SourceLink
from subscribers.restore import subscriptions_restore

from .exporting import FORMAT_VERSION, ISSUE_FIELDS, SETTINGS, SUBSCRIBER_HEADER, TIMES


class RestoreRefused(Exception):
    """The zip cannot be restored here; the message says why."""


def parse_time(value):
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):  # milliseconds since the epoch
        return datetime.fromtimestamp(value / 1000, UTC)
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rows(zf, name, header=None):
    """The rows of a CSV entry as dicts, times parsed, streamed; nothing if the entry is missing."""
    if name not in zf.namelist():
        return
    with io.TextIOWrapper(zf.open(name), encoding="utf-8", newline="") as text:
        reader = csv.DictReader(text)
        if header and tuple(reader.fieldnames or ()) != header:
            raise RestoreRefused(f"{name} does not start with the header {','.join(header)}.")
        for row in reader:
            yield {key: parse_time(value) if key in TIMES else value for key, value in row.items()}


def _events(zf):
    users, User = {}, get_user_model()
    for row in _rows(zf, "events.csv"):
        name = row.pop("actor_user", "")
        if name and name not in users:
            users[name] = User.objects.filter(**{User.USERNAME_FIELD: name}).values_list("pk", flat=True).first()
        yield {**row, "actor_user_id": users.get(name)}


def read_front_matter(text):
    """(fields, body) of an issue file: `---`, one `key: JSON value` a line, `---`, the body as written."""
    head, separator, body = text.removeprefix("---\n").partition("\n---\n")
    if not text.startswith("---\n") or not separator:
        raise RestoreRefused("An issue file has no front matter.")
    fields = {}
    for line in head.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = json.loads(value)
    return fields, body


def _issues(zf, newsletter, rewrite):
    count = 0
    for name in sorted(n for n in zf.namelist() if n.startswith("issues/") and n.endswith(".md")):
        fields, body = read_front_matter(zf.read(name).decode("utf-8"))
        values = {key: parse_time(value) if key in TIMES else value for key, value in fields.items()
                  if key in ISSUE_FIELDS}
        status = values.get("status")
        if status not in Issue.Status.values:
            raise RestoreRefused(f"{name}: unknown status {status!r}.")
        if status == Issue.Status.SCHEDULED:  # it would go out by itself here: the creator schedules it again
            values["status"] = Issue.Status.DRAFT
        elif status == Issue.Status.SENDING:  # it went out (at least in part) there; never again here
            values.update(status=Issue.Status.SENT, sent_at=values.get("sent_at") or values.get("created_at"))
        created_at = values.pop("created_at", None)
        issue = Issue.objects.create(newsletter=newsletter, body_markdown=rewrite(body), **values)
        if created_at:
            Issue.objects.filter(pk=issue.pk).update(created_at=created_at)
        count += 1
    return count


def _images(zf):
    """images/<path> to MEDIA_ROOT/<path>; a file already there is kept. Returns how many were written."""
    root, written = Path(settings.MEDIA_ROOT), 0
    for name in zf.namelist():
        relative = PurePosixPath(name.removeprefix("images/"))
        if not name.startswith("images/") or name.endswith("/") or relative.is_absolute() or ".." in relative.parts:
            continue
        target = root.joinpath(*relative.parts)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(name) as source, open(target, "xb") as out:
            shutil.copyfileobj(source, out)
        written += 1
    return written


def _newsletter(meta, slug, owner):
    newsletter = Newsletter(slug=slug, **{name: meta[name] for name in SETTINGS if name in meta})
    try:
        newsletter.full_clean()
    except ValidationError as error:
        raise RestoreRefused("; ".join(f"{field}: {' '.join(messages)}"
                                       for field, messages in error.message_dict.items())) from None
    newsletter.save()
    if meta.get("created_at"):
        Newsletter.objects.filter(pk=newsletter.pk).update(created_at=parse_time(meta["created_at"]))
    if owner is not None:
        newsletter.owners.add(owner)
    SocialLink.objects.bulk_create([
        SocialLink(newsletter=newsletter, label=link["label"], url=link["url"], position=link.get("position", 0))
        for link in meta.get("social_links", [])
    ])
    SourceLink.objects.bulk_create([
        SourceLink(newsletter=newsletter, source=link["source"], code=link["code"], visits=link.get("visits", 0))
        for link in meta.get("source_links", [])
    ])
    return newsletter


def restore_newsletter(source, *, slug=None, owner=None):
    """Restore the export at `source` (a path or a binary file) as the newsletter `slug` (the
    exported one when not given), owned by `owner`. Returns counts; RestoreRefused says why not."""
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as error:
        raise RestoreRefused(f"Not an export zip: {error}") from None
    with zf:
        try:
            meta = json.loads(zf.read("newsletter.json"))
        except (KeyError, ValueError):
            raise RestoreRefused("The zip has no readable newsletter.json: is it an ownedaudience export?") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise RestoreRefused(f"Unknown export format_version {meta.get('format_version')!r}; "
                                 f"this installation reads version {FORMAT_VERSION}.")
        slug = slug or meta.get("slug", "")
        if Newsletter.objects.filter(slug=slug).exists():
            raise RestoreRefused(f"A newsletter with the slug {slug!r} exists already; pick another with --slug.")
        old_media = meta.get("site_url", "") + meta.get("media_url", settings.MEDIA_URL)
        new_media = settings.SITE_URL + settings.MEDIA_URL
        rewrite = (lambda body: body.replace(old_media, new_media)) if old_media != new_media else (lambda body: body)
        with transaction.atomic():
            newsletter = _newsletter(meta, slug, owner)
            try:
                counts = subscriptions_restore(
                    newsletter.pk, _rows(zf, "subscribers.csv", SUBSCRIBER_HEADER), _events(zf),
                    suppressions=_rows(zf, "suppressions.csv"),
                )
                counts["issues"] = _issues(zf, newsletter, rewrite)
            except (ValueError, KeyError) as error:
                raise RestoreRefused(f"The export does not read back: {error}") from None
        counts["images"] = _images(zf)
    return {"newsletter": newsletter.slug, **counts}
