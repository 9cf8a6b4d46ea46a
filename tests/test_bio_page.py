"""The link-in-bio page as a fan's phone and a link preview see it, and what the creator's admin shows."""

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from newsletters.models import Issue, Newsletter, SocialLink
from subscribers.models import SourceLink

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def news(make_creator):
    creator, newsletter = make_creator("zine")
    newsletter.description = "Weekly notes on <b>ceramics</b>."
    newsletter.avatar_url = "https://cdn.example/avatar.jpg"
    newsletter.save()
    SocialLink.objects.create(
        newsletter=newsletter, label="TikTok", url="https://www.tiktok.com/@zine", position=1
    )
    newsletter.creator = creator
    return newsletter


def test_the_page_has_the_form_social_links_and_link_preview_tags(client, news):
    response = client.get("/zine/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<meta name="viewport" content="width=device-width,initial-scale=1">' in html
    assert '<meta property="og:title" content="Zine">' in html
    assert '<meta property="og:image" content="https://cdn.example/avatar.jpg">' in html
    assert '<meta property="og:url" content="http://127.0.0.1:8000/zine/">' in html
    assert '<meta name="twitter:card" content="summary">' in html
    assert "Weekly notes on &lt;b&gt;ceramics&lt;/b&gt;." in html  # the creator's text, escaped
    assert 'href="https://www.tiktok.com/@zine"' in html
    # A plain form: works with JavaScript off.
    assert (
        '<form method="post" action="/zine/subscribe"' in html
        and 'type="email" id="signup-email" name="email"' in html
    )
    assert "<script" not in html
    assert response["X-Frame-Options"] == "DENY"


def test_only_sent_public_issues_are_listed_newest_first(client, news):
    now = timezone.now()
    Issue.objects.create(
        newsletter=news, title="Older", slug="older", status="sent", sent_at=now - timezone.timedelta(days=7)
    )
    Issue.objects.create(newsletter=news, title="Newest", slug="newest", status="sent", sent_at=now)
    Issue.objects.create(newsletter=news, title="Draft idea", slug="draft", status="draft")
    Issue.objects.create(
        newsletter=news, title="Members only", slug="hidden", status="sent", show_on_web=False, sent_at=now
    )
    html = client.get("/zine/").content.decode()
    assert html.index("Newest") < html.index("Older")
    assert 'href="/zine/issues/newest/"' in html
    assert "Draft idea" not in html and "Members only" not in html


def test_the_page_speaks_the_newsletters_language(client, news):
    news.language = "vi"
    news.save()
    response = client.get("/zine/", HTTP_ACCEPT_LANGUAGE="en")
    html = response.content.decode()
    assert response["Content-Language"] == "vi" and '<html lang="vi">' in html
    assert "Đăng ký" in html and 'content="vi_VN"' in html


def test_slugs_that_shadow_site_routes_are_refused(news):
    for slug in ("admin", "confirm", "unsubscribe", "preferences", "healthz", "static"):
        with pytest.raises(ValidationError):
            Newsletter(slug=slug, name="x").full_clean()


def test_the_admin_shows_both_embed_forms_and_signups_by_source(client, news, subscribe):
    SourceLink.objects.create(newsletter=news, source="tiktok", code="tt")
    subscribe(news, "a@example.com", source="tiktok")
    subscribe(news, "b@example.com", source="tiktok", status="pending")
    client.force_login(news.creator)
    html = client.get(f"/admin/newsletters/newsletter/{news.pk}/change/").content.decode()
    assert "http://127.0.0.1:8000/zine/subscribe" in html  # the plain HTML form's action
    assert "http://127.0.0.1:8000/zine/embed?ref=embed" in html  # the iframe
    assert "http://127.0.0.1:8000/zine/r/tt" in html  # the short link to paste in a bio
    assert "<td>tiktok</td><td>1</td><td>1</td><td>0</td>" in html


def test_the_html_snippet_posts_a_complete_signup(client, news):
    import re

    from newsletters.embed import html_snippet

    snippet = html_snippet(news)
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', snippet))
    assert fields == {"form": "embed", "ref": "embed"}
    assert 'name="website"' in snippet and 'action="http://127.0.0.1:8000/zine/subscribe"' in snippet
