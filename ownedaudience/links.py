"""Every address the platform hands out, in one place: emails, pages, feeds, snippets and the
admin all build their links here, from SITE_URL and the URL names, never with f-strings of
their own.

The fan's token links (confirm, unsubscribe, preferences) are written out by hand because they
are made twice for every message of every send; tests/test_links.py holds them equal to what
reverse() gives.
"""

from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.urls import reverse

from subscribers.tokens import make_token


def absolute(path):
    """`path` (as reverse() gives it) on this installation's public address."""
    return settings.SITE_URL + path


def site_host():
    """The host name of SITE_URL, without its port: the domain of List-Id."""
    return urlsplit(settings.SITE_URL).hostname or "localhost"


# --- a newsletter's public pages -------------------------------------------------------------


def page(newsletter):
    """The link-in-bio page."""
    return absolute(reverse("site:page", args=[newsletter.slug]))


def subscribe(newsletter, *, absolute_url=True):
    """Where every signup form posts (a page of ours posts to the path, whatever host served it)."""
    path = reverse("site:subscribe", args=[newsletter.slug])
    return absolute(path) if absolute_url else path


def embed(newsletter, source=""):
    """The signup form to put in an iframe on another site."""
    query = f"?{urlencode({'ref': source})}" if source else ""
    return absolute(reverse("site:embed", args=[newsletter.slug])) + query


def short_link(source_link):
    """A creator's short bio link (/<slug>/r/<code>): a visit counts its source."""
    return absolute(reverse("site:source_link", args=[source_link.newsletter.slug, source_link.code]))


def archive(newsletter):
    return absolute(reverse("newsletters:archive", args=[newsletter.slug]))


def feed(newsletter):
    return absolute(reverse("newsletters:feed", args=[newsletter.slug]))


def issue(issue, *, absolute_url=True):
    """An issue's web version (a page of ours links to the path)."""
    path = reverse("newsletters:issue_detail", args=[issue.newsletter.slug, issue.slug])
    return absolute(path) if absolute_url else path


# --- a fan's own links -----------------------------------------------------------------------

FAN_PURPOSES = ("confirm", "unsubscribe", "preferences")


def fan(purpose, subscription_id):
    """The signed link that lets one fan confirm, unsubscribe or manage their subscriptions:
    the paths of subscribers:confirm, subscribers:unsubscribe and subscribers:preferences."""
    if purpose not in FAN_PURPOSES:
        raise ValueError(f"no fan link for {purpose!r}")
    return f"{settings.SITE_URL}/{purpose}/{make_token(purpose, subscription_id)}"
