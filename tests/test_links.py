"""Every link the platform hands out comes from ownedaudience.links, on SITE_URL."""

import pytest
from django.urls import resolve, reverse

from ownedaudience import links
from subscribers.tokens import make_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def issue(ready_issue):
    issue, _ = ready_issue(n=1)
    return issue


@pytest.mark.parametrize("purpose", links.FAN_PURPOSES)
def test_the_hand_written_fan_links_are_what_reverse_gives(settings, purpose):
    settings.SITE_URL = "https://letters.example:8443"
    url = links.fan(purpose, 42)
    assert url.startswith("https://letters.example:8443/")
    path = url.removeprefix(settings.SITE_URL)
    assert resolve(path).view_name == f"subscribers:{purpose}"
    assert path == reverse(f"subscribers:{purpose}", args=[make_token(purpose, 42)])


def test_every_public_link_is_absolute_on_site_url_and_resolves(settings, issue):
    from subscribers.models import SourceLink

    settings.SITE_URL = "http://127.0.0.1:8100"
    newsletter = issue.newsletter
    source = SourceLink.objects.create(newsletter=newsletter, source="tiktok", code="tt")
    built = {
        "site:page": links.page(newsletter),
        "site:subscribe": links.subscribe(newsletter),
        "site:embed": links.embed(newsletter, "blog post"),
        "site:source_link": links.short_link(source),
        "newsletters:archive": links.archive(newsletter),
        "newsletters:feed": links.feed(newsletter),
        "newsletters:issue_detail": links.issue(issue),
    }
    for name, url in built.items():
        assert url.startswith("http://127.0.0.1:8100/"), url
        assert resolve(url.removeprefix(settings.SITE_URL).split("?")[0]).view_name == name
    assert built["site:embed"].endswith("?ref=blog+post")
    assert links.subscribe(newsletter, absolute_url=False) == f"/{newsletter.slug}/subscribe"
    assert links.site_host() == "127.0.0.1"


def test_snippets_emails_and_feeds_use_the_same_links(settings, issue, client):
    from newsletters import embed

    settings.SITE_URL = "https://news.example"
    newsletter = issue.newsletter
    assert f'action="{links.subscribe(newsletter)}"' in embed.html_snippet(newsletter)
    assert links.embed(newsletter, "embed").replace("&", "&amp;") in embed.iframe_snippet(newsletter)
