"""A creator in a real browser: log in, send a test copy, press Send, watch the issue go out."""

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from newsletters.models import Issue

from .browser import chromium
from .servers import web_server

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_the_creator_sends_an_issue_from_its_page(ready_issue, smtp_sink, start_worker, database_url):
    from django.conf import settings

    issue, subscriptions = ready_issue(n=3)
    creator = issue.newsletter.owners.get()
    # The server runs the production hashers, not the tests' fast one.
    creator.password = PBKDF2PasswordHasher().encode("a-long-creator-password", "browser-test-salt")
    creator.save()
    # DEBUG only so that the admin's static files are served without a collectstatic step.
    env = {"DATABASE_URL": database_url, "REDIS_URL": settings.REDIS_URL, "EMAIL_URL": smtp_sink.url,
           "DEBUG": "true"}
    with web_server(**env) as base, start_worker(name="admin-send", beat=True, EMAIL_URL=smtp_sink.url), \
            chromium() as browser:
        page = browser.new_page()
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", creator.username)
        page.fill("#id_password", "a-long-creator-password")
        page.click("input[type=submit]")
        page.wait_for_url(f"{base}/admin/")
        page.goto(f"{base}/admin/newsletters/issue/{issue.pk}/change/")

        page.fill("input[name=to]", "me@creator.example")
        page.click("text=Send a test")
        page.wait_for_load_state()
        assert "A test copy went to me@creator.example" in page.content()
        assert smtp_sink.to("me@creator.example")[0].message["Subject"] == "[Test] Issue one"

        page.click("text=Send now to 3")
        # The page follows the send by itself and reloads when it is over.
        page.wait_for_selector("#send-status:has-text('Sent')", timeout=30_000)
        assert page.locator('[data-status="sent"]').inner_text() == "3"
    for subscription in subscriptions:
        assert len(smtp_sink.to(subscription.subscriber.email)) == 1
    assert Issue.objects.get(pk=issue.pk).status == Issue.Status.SENT
