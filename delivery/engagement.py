"""Engagement without spying: clicks and opens counted per issue, per fan only when the creator
turns engagement_per_subscriber on (and every email's footer then says so).

- Clicks (newsletter.track_clicks): when a send renders its renditions, every http(s) link of
  the HTML and text bodies is stored once as a TrackedLink and replaced by /l/<signed id>. The
  redirect goes only to the stored address: a bad or unknown token is a 404, never a redirect
  to anything the request names.
- Opens (newsletter.track_opens): a 1×1 image /o/<signed issue>.gif at the end of the HTML body
  counts IssueEngagement.opens. Mail apps and scanners load it on their own: a rough figure.
- Per fan: links and the pixel carry the recipient's token (the RECIPIENT placeholder, filled
  per copy in mime.py: one small signature, no lookup), so a LinkClick or DeliveryOpen names
  the delivery. Recorded only while the newsletter still says so, and only for a real ledger
  row of that issue (a test copy's made-up delivery id records nothing).
- Only GET counts: HEAD (link scanners, prefetchers) is answered but counts nothing.
"""

import html as html_lib
import re
from urllib.parse import urlsplit

from django.core import signing
from django.db import transaction
from django.db.models import F
from django.urls import reverse

from newsletters import rendering
from newsletters.models import Issue
from ownedaudience import links
from subscribers.tokens import make_token, read_token

from .models import Delivery, DeliveryOpen, IssueEngagement, LinkClick, TrackedLink

RECIPIENT_SALT = "ownedaudience.engagement.recipient"
# An <a>'s href, quoted as the renderer and the CSS inliner write it.
HREF = re.compile(r"""(<a\b[^>]*?\shref=)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
# A bare address in the text part; a trailing full stop or comma is the sentence's, not the link's.
TEXT_URL = re.compile(r"""https?://[^\s<>"'()\[\]]*[^\s<>"'()\[\].,;:!?]""", re.IGNORECASE)
MAX_URL = 2000


def _sign(salt, value):
    return signing.Signer(salt=salt).sign(value)


def _unsign(salt, token):
    try:
        return signing.Signer(salt=salt).unsign(token or "")
    except signing.BadSignature:
        return None


def link_token(link_id):
    return make_token("engagement.link", link_id)


def open_token(issue_id):
    return make_token("engagement.open", issue_id)


def recipient_token(issue_id, delivery_id):
    """What fills RECIPIENT in one copy: the issue and the delivery, signed together."""
    return _sign(RECIPIENT_SALT, f"{signing.b62_encode(issue_id)}.{signing.b62_encode(delivery_id)}")


def read_recipient(token, issue_id):
    """The delivery id in a recipient token of this issue, or None."""
    value = _unsign(RECIPIENT_SALT, token)
    if not value or value.count(".") != 1:
        return None
    try:
        issue, delivery = (signing.b62_decode(part) for part in value.split("."))
    except ValueError:
        return None
    return delivery if issue == issue_id and delivery > 0 else None


# --- at rendition time -----------------------------------------------------------------------


def _trackable(url):
    """http(s) only (mailto: and the per-fan placeholders stay as they are), and nothing a
    recipient's copy would still fill in."""
    return (
        len(url) <= MAX_URL
        and urlsplit(url).scheme.lower() in ("http", "https")
        and "%%OA_" not in url
    )


def _tracked_urls(issue, urls, per_subscriber):
    """{original address: its /l/ address} for these addresses, each stored once per issue."""
    wanted = list(dict.fromkeys(url for url in urls if _trackable(url)))
    if not wanted:
        return {}
    TrackedLink.objects.bulk_create([TrackedLink(issue=issue, url=url) for url in wanted], ignore_conflicts=True)
    suffix = "/" + rendering.RECIPIENT if per_subscriber else ""
    return {
        url: links.absolute(reverse("engagement:click", args=[link_token(pk)])) + suffix
        for url, pk in TrackedLink.objects.filter(issue=issue, url__in=wanted).values_list("url", "id")
    }


def open_url(issue, per_subscriber):
    path = reverse("engagement:open", args=[open_token(issue.pk)])
    if per_subscriber:
        path = path.removesuffix(".gif") + "/" + rendering.RECIPIENT + ".gif"
    return links.absolute(path)


def track(issue, html, text):
    """An email rendition's (html, text) with its links made countable and the open pixel added,
    as far as the newsletter asks; untouched when it asks for neither."""
    newsletter = issue.newsletter
    per_subscriber = newsletter.engagement_per_subscriber
    if newsletter.track_clicks:
        html_urls = [html_lib.unescape(found.group(3)) for found in HREF.finditer(html)]
        text_urls = TEXT_URL.findall(text)
        tracked = _tracked_urls(issue, html_urls + text_urls, per_subscriber)

        def in_html(found):
            url = tracked.get(html_lib.unescape(found.group(3)))
            if url is None:
                return found.group(0)
            return f"{found.group(1)}{found.group(2)}{html_lib.escape(url)}{found.group(2)}"

        html = HREF.sub(in_html, html)
        text = TEXT_URL.sub(lambda found: tracked.get(found.group(0), found.group(0)), text)
    if newsletter.track_opens:
        IssueEngagement.objects.get_or_create(issue=issue)
        html = rendering.add_open_pixel(html, open_url(issue, per_subscriber))
    return html, text


# --- when a fan clicks or opens ----------------------------------------------------------------


def _recorded_delivery(recipient, issue_id):
    """The delivery to record against: a real row of this issue, while the newsletter keeps
    engagement per fan; otherwise None."""
    delivery_id = read_recipient(recipient, issue_id) if recipient else None
    if delivery_id and Delivery.objects.filter(
        pk=delivery_id, issue_id=issue_id, issue__newsletter__engagement_per_subscriber=True
    ).exists():
        return delivery_id
    return None


def follow_link(token, recipient="", *, count=True):
    """The stored address behind a /l/ token, or None for a token that is bad or names no link.
    With `count`, the click is counted (and kept against the recipient's delivery, per fan)."""
    link_id = read_token("engagement.link", token)
    if link_id is None:
        return None
    link = TrackedLink.objects.filter(pk=link_id).values("id", "issue_id", "url").first()
    if link is None:
        return None
    if count:
        with transaction.atomic():
            TrackedLink.objects.filter(pk=link["id"]).update(clicks=F("clicks") + 1)
            delivery_id = _recorded_delivery(recipient, link["issue_id"])
            if delivery_id:
                LinkClick.objects.create(link_id=link["id"], delivery_id=delivery_id)
    return link["url"]


def record_open(token, recipient=""):
    """Count one open of the issue behind an /o/ token; False (nothing counted) for a bad one."""
    issue_id = read_token("engagement.open", token)
    if issue_id is None:
        return False
    with transaction.atomic():
        if not IssueEngagement.objects.filter(issue_id=issue_id).update(opens=F("opens") + 1):
            return False
        delivery_id = _recorded_delivery(recipient, issue_id)
        if delivery_id:
            DeliveryOpen.objects.bulk_create(
                [DeliveryOpen(issue_id=issue_id, delivery_id=delivery_id)], ignore_conflicts=True
            )
    return True


# --- figures -----------------------------------------------------------------------------------


def issue_engagement(issue_id):
    """An issue's figures from our own counters (SES's open and click events are the feedback
    app's). `unique_clickers` and `unique_openers` are None unless engagement is kept per fan."""
    link_rows = list(
        TrackedLink.objects.filter(issue_id=issue_id).order_by("-clicks", "id").values_list("url", "clicks")
    )
    opens = IssueEngagement.objects.filter(issue_id=issue_id).values_list("opens", flat=True).first() or 0
    per_subscriber = bool(
        Issue.objects.filter(pk=issue_id).values_list("newsletter__engagement_per_subscriber", flat=True).first()
    )
    unique_clickers = unique_openers = None
    if per_subscriber:
        unique_clickers = (
            LinkClick.objects.filter(link__issue_id=issue_id).values("delivery_id").distinct().count()
        )
        unique_openers = DeliveryOpen.objects.filter(issue_id=issue_id).count()
    return {
        "clicks": sum(clicks for _, clicks in link_rows),
        "links": link_rows,
        "opens": opens,
        "opens_reliable": False,
        "unique_clickers": unique_clickers,
        "unique_openers": unique_openers,
    }
