"""Posts import: a Substack export (posts.csv and posts/<post_id>.html, as the zip, its folder or
posts.csv itself) or a Ghost JSON export, into a newsletter's archive.

Published posts become sent issues at their original dates (sent_at, and created_at kept): the
status is sent from the start and no Delivery row exists, so nothing is ever mailed. Drafts stay
drafts (Ghost's scheduled posts too: they would go out by themselves here). Paid posts are for paid
members; pages and threads are skipped. The body is the post's HTML kept inside the Markdown, in
one block: the renderer passes HTML through and nh3 sanitises it. An issue's slug is the post's,
so a second import of the same export finds every post there and changes nothing.
"""

import csv
import html
import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.db import transaction
from django.utils.text import slugify

from newsletters.models import Issue

from .restore import parse_time


class PostsUnreadable(Exception):
    """Neither a Substack nor a Ghost export."""


@dataclass
class Post:
    slug: str
    title: str
    html: str
    status: str
    audience: str = Issue.Audience.EVERYONE
    sent_at: datetime | None = None
    created_at: datetime | None = None
    show_on_web: bool = True


def _true(value):
    return str(value).strip().lower() == "true"


# --- Substack -----------------------------------------------------------------------------------


def _substack_files(path):
    """read(name) for the files of a Substack export, relative to the folder holding posts.csv."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        found = sorted((n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "posts.csv"), key=len)
        if not found:
            raise PostsUnreadable(f"{path.name} holds no posts.csv: is it a Substack export?")
        base = found[0].removesuffix("posts.csv")
        names = set(archive.namelist())
        return lambda name: archive.read(base + name).decode("utf-8-sig") if base + name in names else None
    folder = path.parent if path.is_file() else path
    if not (folder / "posts.csv").is_file():
        raise PostsUnreadable(f"No posts.csv in {folder}: is it a Substack export?")
    return lambda name: (folder / name).read_text("utf-8-sig") if (folder / name).is_file() else None


def substack_posts(path):
    """Each row of posts.csv as a Post, or (None, why) for one that is skipped."""
    read = _substack_files(path)
    for row in csv.DictReader(io.StringIO(read("posts.csv"))):
        post_id, kind = (row.get("post_id") or "").strip(), (row.get("type") or "newsletter").strip().lower()
        title = (row.get("title") or "").strip() or post_id
        if kind in ("page", "thread"):
            yield None, f"{post_id}: a {kind}, not an issue"
            continue
        body = read(f"posts/{post_id}.html") or ""
        if (row.get("subtitle") or "").strip():
            body = f"<p><em>{html.escape(row['subtitle'].strip())}</em></p>\n{body}"
        if (row.get("podcast_url") or "").strip():
            url = html.escape(row["podcast_url"].strip())
            body += f'\n<p>🎧 <a href="{url}">{url}</a></p>'
        published, posted = _true(row.get("is_published")), parse_time(row.get("post_date") or None)
        yield Post(
            slug=post_id.partition(".")[2] or slugify(title) or post_id, title=title, html=body,
            status=Issue.Status.SENT if published else Issue.Status.DRAFT,
            audience=Issue.Audience.PAID if row.get("audience") == "only_paid" else Issue.Audience.EVERYONE,
            sent_at=(parse_time(row.get("email_sent_at") or None) or posted) if published else None,
            created_at=posted,
        ), ""


# --- Ghost --------------------------------------------------------------------------------------

GHOST_STATUS = {"published": Issue.Status.SENT, "sent": Issue.Status.SENT, "draft": Issue.Status.DRAFT,
                "scheduled": Issue.Status.DRAFT}


def lexical_html(document):
    """Ghost's Lexical JSON as simple HTML, for a post exported without its `html`."""
    def walk(node):
        kind, inner = node.get("type", ""), "".join(walk(child) for child in node.get("children", []))
        if kind in ("text", "extended-text"):
            text, form = html.escape(node.get("text", "")), node.get("format", 0)
            text = f"<strong>{text}</strong>" if form & 1 else text
            return f"<em>{text}</em>" if form & 2 else text
        if kind in ("link", "autolink"):
            return f'<a href="{html.escape(node.get("url", ""))}">{inner}</a>'
        if kind == "image":
            return f'<img src="{html.escape(node.get("src", ""))}" alt="{html.escape(node.get("alt") or "")}">'
        if kind == "html":
            return node.get("html", "")
        if kind in ("linebreak", "horizontalrule"):
            return "<br>" if kind == "linebreak" else "<hr>"
        tag = {"paragraph": "p", "quote": "blockquote", "listitem": "li", "heading": node.get("tag"),
               "extended-heading": node.get("tag"), "list": "ol" if node.get("listType") == "number" else "ul"}
        tag = tag.get(kind) if kind != "root" else None
        return f"<{tag}>{inner}</{tag}>\n" if tag else inner
    return walk(json.loads(document)["root"]) if document else ""


def ghost_posts(path, site_url=""):
    try:
        document = json.loads(Path(path).read_text("utf-8-sig"))
        data = document["db"][0]["data"] if "db" in document else document.get("data", document)
        posts = data["posts"]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise PostsUnreadable(f"{Path(path).name} is not a Ghost JSON export (db → data → posts).") from None
    for post in posts:
        kind, status = post.get("type") or ("page" if post.get("page") else "post"), post.get("status")
        if kind != "post" or status not in GHOST_STATUS:
            yield None, f"{post.get('slug')}: a {kind if kind != 'post' else status} post, not an issue"
            continue
        body = post.get("html") or lexical_html(post.get("lexical")) or html.escape(post.get("plaintext") or "")
        sent = GHOST_STATUS[status] == Issue.Status.SENT
        yield Post(
            slug=post.get("slug") or slugify(post.get("title") or "") or str(post.get("id")),
            title=(post.get("title") or "").strip() or post.get("slug", ""), status=GHOST_STATUS[status],
            html=body.replace("__GHOST_URL__", site_url.rstrip("/")) if site_url else body,
            audience=Issue.Audience.PAID if post.get("visibility") in ("paid", "tiers") else Issue.Audience.EVERYONE,
            sent_at=parse_time(post.get("published_at")) if sent else None,
            created_at=parse_time(post.get("created_at")),
            show_on_web=status != "sent",  # Ghost's email-only posts were never on the site
        ), ""


# --- into the archive ---------------------------------------------------------------------------


# Where the old platform cut a post for free readers: our marker, on a line of its own.
PAYWALL_MARKS = re.compile(r'<!--\s*members-only\s*-->|<div class="paywall-jump"[^>]*>\s*</div>', re.IGNORECASE)


def with_paywall_marker(body):
    return PAYWALL_MARKS.sub("\n<!-- paywall -->\n", body, count=1)


def import_posts(newsletter, path, *, site_url=""):
    """Import a Substack or Ghost export into `newsletter`'s archive. Returns the counts
    (sent, drafts, skipped) and a report line per post skipped."""
    ghost = str(path).lower().endswith(".json")
    posts = ghost_posts(path, site_url) if ghost else substack_posts(path)
    counts, report = {"sent": 0, "drafts": 0, "skipped": 0}, []
    with transaction.atomic():
        taken = set(newsletter.issues.values_list("slug", flat=True))
        for post, why in posts:
            slug = post and (slugify(post.slug)[:120].strip("-") or "post")
            if post is not None and slug in taken:
                why = f"{slug}: already in the archive"
            if post is None or slug in taken:
                counts["skipped"] += 1
                report.append(why)
                continue
            issue = Issue.objects.create(
                newsletter=newsletter, title=" ".join(post.title.split())[:300], slug=slug,
                body_markdown=f"<div>\n{with_paywall_marker(post.html.strip())}\n</div>\n" if post.html.strip() else "",
                status=post.status, audience=post.audience, show_on_web=post.show_on_web, sent_at=post.sent_at,
            )
            if post.created_at or post.sent_at:  # created_at is auto_now_add: the original date, afterwards
                Issue.objects.filter(pk=issue.pk).update(created_at=post.created_at or post.sent_at)
            taken.add(slug)
            counts["sent" if post.status == Issue.Status.SENT else "drafts"] += 1
    return {**counts, "report": report}
