"""The public archive: an issue's web version, the list of issues, and the RSS feed.

Paid content: a paid-only issue shows members its body and everyone else a notice; an issue
with a paywall marker shows members all of it and everyone else the part above the marker. The
feed is read by nobody in particular, so it carries only what anyone may read."""

import re
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.syndication.views import Feed
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import translation
from django.utils.cache import patch_cache_control, patch_vary_headers

from billing.selectors import member_subscription, plans_on_offer
from delivery.models import Rendition
from newsletters import rendering
from newsletters.models import Issue, Newsletter
from ownedaudience import links


def web_body(issue):
    """The web version stored when the issue was sent, or rendered now for one that never was."""
    stored = Rendition.objects.filter(issue=issue, variant="web").values_list("html", flat=True).first()
    return stored if stored is not None else rendering.render_web_body(issue)


def is_paywalled(issue):
    return rendering.split_paywall(issue.body_markdown)[1]


def readable_web_body(issue, member):
    """What a visitor may read of an issue: a member all of it, as sent; anyone else the part above
    the paywall marker (rendered now, since the stored web version holds the whole), or nothing of a
    paid-only issue without one."""
    if member:
        return web_body(issue)
    if is_paywalled(issue):  # a paid-only issue with a marker shows its opening as a teaser, as Substack's do
        return rendering.render_web_body(issue, member=False)
    return "" if issue.audience == Issue.Audience.PAID else web_body(issue)


def public_issues(newsletter):
    return newsletter.issues.filter(status=Issue.Status.SENT, show_on_web=True).order_by("-sent_at")


def viewer_is_member(request, newsletter):
    """Whether the visitor is logged in with the address of a paid or comped member of the newsletter."""
    return request.user.is_authenticated and member_subscription(request.user.email, newsletter.id) is not None


def issue_detail(request, slug, issue_slug):
    newsletter = get_object_or_404(Newsletter, slug=slug)
    issue = get_object_or_404(public_issues(newsletter), slug=issue_slug)
    members_only = issue.audience == Issue.Audience.PAID
    paywalled = not members_only and is_paywalled(issue)
    # Only a gated issue asks who the visitor is: an open one is the same page for everyone, cacheable.
    member = (members_only or paywalled) and viewer_is_member(request, newsletter)
    with translation.override(newsletter.language):
        response = render(request, "pages/issue_detail.html", {
            "newsletter": newsletter,
            "issue": issue,
            "locked": members_only and not member,
            "cut": paywalled and not member,
            "body_html": readable_web_body(issue, member),
            "upgrade_url": rendering.upgrade_url(newsletter),
            "login_url": f"{reverse('account_request_login_code')}?{urlencode({'next': request.path})}",
            "plans": list(plans_on_offer(newsletter.pk)) if (members_only or paywalled) and not member else [],
            "join_action": f"/{newsletter.slug}/join",
            "source": f"issue-{issue.slug}"[:100],  # a member won here is counted for this issue
        })
    if members_only or paywalled:
        patch_cache_control(response, private=True)
        patch_vary_headers(response, ["Cookie"])
        response._csp_config = settings.CSP_TO_STRIPE  # the plans under the paywall end at Stripe Checkout
    return response


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
        return xml_text(readable_web_body(issue, member=False))

    def item_link(self, issue):
        return links.issue(issue)

    def item_pubdate(self, issue):
        return issue.sent_at
