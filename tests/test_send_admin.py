"""The creator's side of sending: buttons on the issue page, and the public archive it feeds."""

import pytest
from django.urls import reverse

from delivery import engine
from delivery.models import Delivery, OutboxMessage
from newsletters.models import Issue

pytestmark = pytest.mark.django_db


@pytest.fixture
def creator_issue(ready_issue, client, monkeypatch):
    monkeypatch.setattr(engine.chains, "kick", lambda *a, **k: None)
    issue, subscriptions = ready_issue(n=3)
    client.force_login(issue.newsletter.owners.get())
    return issue


def post(client, issue, name, data=None):
    return client.post(reverse(f"admin:newsletters_issue_{name}", args=[issue.pk]), data or {})


def test_send_now_snapshots_and_reports(client, creator_issue):
    page = client.get(reverse("admin:newsletters_issue_change", args=[creator_issue.pk])).content.decode()
    assert "Send now to 3" in page
    response = post(client, creator_issue, "send")
    assert response.status_code == 302
    creator_issue.refresh_from_db()
    assert creator_issue.status == Issue.Status.SENDING
    assert Delivery.objects.filter(issue=creator_issue).count() == 3
    progress = client.get(reverse("admin:newsletters_issue_progress", args=[creator_issue.pk])).json()
    assert progress == {"status": "sending", "counts": {"pending": 3}}


def test_a_broken_issue_shows_why_and_sends_nothing(client, creator_issue):
    creator_issue.body_markdown = "<script>alert(1)</script>"
    creator_issue.save()
    page = client.get(reverse("admin:newsletters_issue_change", args=[creator_issue.pk])).content.decode()
    assert "Fix these before sending" in page and "&lt;script&gt;" in page
    response = post(client, creator_issue, "send")
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("<script>" in m for m in messages)
    assert not Delivery.objects.filter(issue=creator_issue).exists()


def test_test_send_goes_to_the_outbox(client, creator_issue, transport_settings):
    transport_settings("outbox://")
    post(client, creator_issue, "test", {"to": "me@creator.example"})
    message = OutboxMessage.objects.get(to="me@creator.example")
    assert message.subject == "[Test] Issue one"
    assert "Hello" in message.html_body
    creator_issue.refresh_from_db()
    assert creator_issue.status == Issue.Status.DRAFT


def test_schedule_sets_the_time(client, creator_issue):
    post(client, creator_issue, "schedule", {"when": "2030-01-02T03:04"})
    creator_issue.refresh_from_db()
    assert creator_issue.status == Issue.Status.SCHEDULED
    assert creator_issue.scheduled_at.year == 2030


def test_another_creator_cannot_press_the_buttons(client, creator_issue, make_creator):
    intruder, _ = make_creator("intruder")
    client.force_login(intruder)
    for name in ["send", "test", "schedule", "retry_failed", "resolve_unknown", "progress"]:
        assert post(client, creator_issue, name).status_code == 404
    creator_issue.refresh_from_db()
    assert creator_issue.status == Issue.Status.DRAFT


def test_failed_and_unknown_rows_can_be_handled_from_the_page(client, creator_issue):
    post(client, creator_issue, "send")
    rows = Delivery.objects.filter(issue=creator_issue)
    first, second, third = rows.order_by("id")
    Delivery.objects.filter(pk=first.pk).update(status="failed", error="550 no such user")
    Delivery.objects.filter(pk__in=[second.pk, third.pk]).update(status="unknown")
    page = client.get(reverse("admin:newsletters_issue_change", args=[creator_issue.pk])).content.decode()
    assert "Retry failed (1)" in page and "Send unknown again (2)" in page
    post(client, creator_issue, "retry_failed")
    post(client, creator_issue, "resolve_unknown", {"resend": "no"})
    assert dict(engine.progress(creator_issue.pk)) == {"pending": 1, "sent": 2}


def test_public_archive_shows_sent_web_issues_only(client, creator_issue, ready_issue, transport_settings):
    transport_settings("discard://")
    engine.start_send(creator_issue.pk)
    while engine.send_next_batch(creator_issue.pk)[0] == "again":
        pass
    Issue.objects.create(newsletter=creator_issue.newsletter, title="Unsent draft", slug="draft")
    Issue.objects.create(newsletter=creator_issue.newsletter, title="Hidden", slug="hidden", status="sent",
                         show_on_web=False)
    archive = client.get("/zine/issues/").content.decode()
    assert "Issue one" in archive and "Unsent draft" not in archive and "Hidden" not in archive
    page = client.get("/zine/issues/issue-one/")
    assert page.status_code == 200 and "<strong>things</strong>" in page.content.decode()
    assert "Hello friend," in page.content.decode()
    assert client.get("/zine/issues/draft/").status_code == 404
    assert client.get("/zine/issues/hidden/").status_code == 404
    feed = client.get("/zine/feed.xml")
    assert feed["Content-Type"].startswith("application/rss+xml")
    assert "<title>Issue one</title>" in feed.content.decode()


def test_paid_issues_stay_closed_on_the_web(client, creator_issue):
    Issue.objects.create(newsletter=creator_issue.newsletter, title="Members", slug="members", status="sent",
                         audience="paid", body_markdown="the secret recipe")
    page = client.get("/zine/issues/members/").content.decode()
    assert "for paying members" in page and "secret recipe" not in page
    assert "secret recipe" not in client.get("/zine/feed.xml").content.decode()


def test_the_web_version_is_what_was_sent(client, creator_issue, transport_settings):
    transport_settings("discard://")
    engine.start_send(creator_issue.pk)
    Issue.objects.filter(pk=creator_issue.pk).update(status="sent", body_markdown="rewritten afterwards")
    page = client.get("/zine/issues/issue-one/").content.decode()
    assert "<strong>things</strong>" in page and "rewritten afterwards" not in page
