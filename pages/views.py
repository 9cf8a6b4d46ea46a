"""The public archive: an issue's web version, the list of issues, and the RSS feed."""

import re

from django.contrib.syndication.views import Feed
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.utils import translation

from delivery.models import Rendition
from newsletters import rendering
from newsletters.models import Issue, Newsletter
from ownedaudience import links


def web_body(issue):
    """The web version stored when the issue was sent, or rendered now for one that never was."""
    stored = Rendition.objects.filter(issue=issue, variant="web").values_list("html", flat=True).first()
    return stored if stored is not None else rendering.render_web_body(issue)


def public_issues(newsletter):
    return newsletter.issues.filter(status=Issue.Status.SENT, show_on_web=True).order_by("-sent_at")


def issue_detail(request, slug, issue_slug):
    newsletter = get_object_or_404(Newsletter, slug=slug)
    issue = get_object_or_404(public_issues(newsletter), slug=issue_slug)
    members_only = issue.audience == Issue.Audience.PAID
    with translation.override(newsletter.language):
        return render(request, "pages/issue_detail.html", {
            "newsletter": newsletter,
            "issue": issue,
            "members_only": members_only,
            "body_html": "" if members_only else web_body(issue),
        })


def archive(request, slug):
    newsletter = get_object_or_404(Newsletter, slug=slug)
    with translation.override(newsletter.language):
        return render(request, "pages/archive.html", {
            "newsletter": newsletter, "issues": public_issues(newsletter)[:200],
        })


# What XML 1.0 cannot carry at all; the feed would answer 500 (or be unreadable) on one of them in
# an issue sent before rendering dropped them, or in a name saved straight to the database.
XML_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value):
    return XML_UNSAFE.sub("", value or "")


class IssueFeed(Feed):
    def get_object(self, request, slug):
        newsletter = Newsletter.objects.filter(slug=slug).first()
        if newsletter is None:
            raise Http404
        return newsletter

    def title(self, newsletter):
        return xml_text(newsletter.name)

    def link(self, newsletter):
        return links.archive(newsletter)

    def description(self, newsletter):
        return xml_text(newsletter.description)

    def items(self, newsletter):
        return public_issues(newsletter)[:50]

    def item_title(self, issue):
        return xml_text(issue.title)

    def item_description(self, issue):
        return "" if issue.audience == Issue.Audience.PAID else xml_text(web_body(issue))

    def item_link(self, issue):
        return links.issue(issue)

    def item_pubdate(self, issue):
        return issue.sent_at
