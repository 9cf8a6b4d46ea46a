"""Moving the archive: Substack and Ghost posts become issues at their original dates, paid posts
paid-only, drafts drafts, pages skipped; nothing is sent, and a second import changes nothing."""

import io
import json
import re
import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import call_command

from delivery.models import Delivery
from newsletters import rendering
from newsletters.models import Issue
from portability.posts import import_posts

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "posts"
SUBSTACK = FIXTURES / "substack_export"
GHOST = FIXTURES / "ghost-export.json"


@pytest.fixture
def news(make_creator):
    return make_creator("fieldnotes")[1]


def issues(newsletter):
    return {issue.slug: issue for issue in newsletter.issues.all()}


def archive_titles(client, newsletter):
    page = client.get(f"/{newsletter.slug}/issues/").content.decode()
    return re.findall(r'<a href="/[^"]+/issues/[^"]+/">([^<]+)</a>', page)


def when(text):
    return datetime.fromisoformat(text).astimezone(UTC)


def test_a_substack_export_becomes_the_archive_at_its_dates(news, client):
    counts = import_posts(news, SUBSTACK)
    assert {key: counts[key] for key in ("sent", "drafts", "skipped")} == {"sent": 3, "drafts": 1, "skipped": 1}
    assert counts["report"] == ["140000001.about: a page, not an issue"]

    found = issues(news)
    assert set(found) == {"welcome-to-the-field-notes", "the-paid-deep-dive", "episode-1-on-slow-work",
                          "draft-notes-for-april"}
    welcome, paid, podcast, draft = (found[slug] for slug in (
        "welcome-to-the-field-notes", "the-paid-deep-dive", "episode-1-on-slow-work", "draft-notes-for-april"))
    assert (welcome.status, welcome.audience) == (Issue.Status.SENT, Issue.Audience.EVERYONE)
    assert welcome.sent_at == when("2024-01-09T14:00:03.512Z")  # email_sent_at
    assert welcome.created_at == when("2024-01-09T14:00:00.000Z")  # post_date
    assert welcome.title == "Welcome to Field Notes"
    assert "<strong>Field Notes</strong>" in welcome.body_markdown
    assert "<em>What this newsletter is, and what it isn&#x27;t</em>" in welcome.body_markdown
    assert (paid.status, paid.audience) == (Issue.Status.SENT, Issue.Audience.PAID)
    assert podcast.status == Issue.Status.SENT and podcast.sent_at == when("2024-03-05T09:00:00.000Z")
    assert "https://example.com/audio/episode-1.mp3" in podcast.body_markdown
    assert (draft.status, draft.sent_at, draft.audience) == (Issue.Status.DRAFT, None, Issue.Audience.EVERYONE)
    assert not Delivery.objects.exists()  # sent in the past, never again

    # The public archive: newest first, no draft, no page; the web version keeps the HTML, sanitised.
    assert archive_titles(client, news) == [
        "Episode 1: On slow work", "The paid deep dive: pricing, churn, and honesty", "Welcome to Field Notes",
    ]
    page = client.get(f"/{news.slug}/issues/welcome-to-the-field-notes/").content.decode()
    assert "<strong>Field Notes</strong>" in page and 'alt="A desk by a window"' in page
    assert 'data-attrs=' not in page

    again = import_posts(news, SUBSTACK)
    assert {key: again[key] for key in ("sent", "drafts", "skipped")} == {"sent": 0, "drafts": 0, "skipped": 5}
    assert news.issues.count() == 4


def test_the_substack_zip_and_the_command(news, tmp_path):
    export = tmp_path / "substack-export.zip"
    with zipfile.ZipFile(export, "w") as zf:
        for path in SUBSTACK.rglob("*"):
            if path.is_file():
                zf.write(path, f"fieldnotes-export/{path.relative_to(SUBSTACK).as_posix()}")
    out = io.StringIO()
    call_command("import_posts", str(export), newsletter=news.slug, stdout=out)
    assert json.loads(out.getvalue()) == {"sent": 3, "drafts": 1, "skipped": 1}
    assert issues(news)["the-paid-deep-dive"].audience == Issue.Audience.PAID
    # Substack's paywall line became our marker: the opening is a teaser, the rest is for members.
    free, cut = rendering.split_paywall(issues(news)["the-paid-deep-dive"].body_markdown)
    assert cut and "full breakdown" in free and "only in the paid edition" not in free

    folder = tmp_path / "unzipped"
    shutil.copytree(SUBSTACK, folder)
    out = io.StringIO()
    call_command("import_posts", str(folder / "posts.csv"), newsletter=news.slug, stdout=out)
    assert json.loads(out.getvalue()) == {"sent": 0, "drafts": 0, "skipped": 5}


def test_a_ghost_export_becomes_the_archive(news, client):
    out = io.StringIO()
    call_command("import_posts", str(GHOST), newsletter=news.slug, site_url="https://garden.example/",
                 stdout=out)
    assert json.loads(out.getvalue()) == {"sent": 5, "drafts": 2, "skipped": 1}
    found = issues(news)
    assert "about" not in found  # a page
    expected = {
        "welcome-to-the-slow-garden": (Issue.Status.SENT, Issue.Audience.EVERYONE, True),
        "notes-for-members": (Issue.Status.SENT, Issue.Audience.EVERYONE, True),
        "the-paid-almanac-march": (Issue.Status.SENT, Issue.Audience.PAID, True),
        "for-supporters-seed-swap-list": (Issue.Status.SENT, Issue.Audience.PAID, True),
        "a-quick-frost-warning": (Issue.Status.SENT, Issue.Audience.EVERYONE, False),  # email-only
        "draft-what-to-sow-in-june": (Issue.Status.DRAFT, Issue.Audience.EVERYONE, True),
        "coming-soon-the-autumn-issue": (Issue.Status.DRAFT, Issue.Audience.EVERYONE, True),  # was scheduled
    }
    assert {slug: (i.status, i.audience, i.show_on_web) for slug, i in found.items()} == expected
    welcome = found["welcome-to-the-slow-garden"]
    assert welcome.sent_at == when("2024-01-05T09:00:00.000Z")
    assert welcome.created_at == when("2024-01-02T08:10:00.000Z")
    assert 'src="https://garden.example/content/images/2024/01/seedlings.jpg"' in welcome.body_markdown
    # Exported without its html: read from the Lexical document.
    assert "<strong>compost is patience.</strong>" in found["notes-for-members"].body_markdown
    assert found["coming-soon-the-autumn-issue"].sent_at is None

    assert archive_titles(client, news) == [
        "For supporters: seed swap list", "The paid almanac: March", "Notes for members",
        "Welcome to The Slow Garden",
    ]
    again = import_posts(news, GHOST)
    assert {key: again[key] for key in ("sent", "drafts", "skipped")} == {"sent": 0, "drafts": 0, "skipped": 8}
    assert not Delivery.objects.exists()


def test_something_else_is_refused_with_a_reason(news, tmp_path):
    from django.core.management import CommandError

    stray = tmp_path / "notes.json"
    stray.write_text('{"hello": "world"}')
    with pytest.raises(CommandError, match="not a Ghost JSON export"):
        call_command("import_posts", str(stray), newsletter=news.slug, stdout=io.StringIO())
    with pytest.raises(CommandError, match="no posts.csv|No posts.csv"):
        call_command("import_posts", str(tmp_path), newsletter=news.slug, stdout=io.StringIO())
