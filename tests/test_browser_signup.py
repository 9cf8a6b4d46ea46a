"""End to end in real Chromium: a fan on a phone subscribes from a form on someone else's site,
confirms from the email, gets the welcome email, and a mail provider's one-click POST unsubscribes."""

import http.client
import re
import time
import uuid
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connections
from django.test import override_settings

from newsletters.embed import html_snippet, iframe_snippet
from subscribers.models import Subscription

from .beat import celery_beat
from .browser import PHONE, chromium, second_origin
from .servers import web_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]


def wait_for(predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def mail_to(sink, address, subject_part):
    return wait_for(
        lambda: next((m.message for m in sink.to(address) if subject_part in m.message["Subject"]), None),
        what=f"an email to {address} about {subject_part!r}",
    )


def gmail_one_click(url):
    """POST as Gmail does for RFC 8058: form-encoded body, no cookies, no CSRF token; redirects not followed."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request(
        "POST",
        parts.path,
        body="List-Unsubscribe=One-Click",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "Mozilla/5.0 (compatible; Google-Safety)",
        },
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_a_fan_subscribes_from_another_site_confirms_and_unsubscribes_in_one_click(
    make_creator, database_url, smtp_sink, start_worker, tmp_path, monkeypatch
):
    _, news = make_creator("zine")
    news.welcome_subject = "Welcome to Zine"
    news.welcome_body = "Glad you are here. Reply any time."
    news.save()
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.REDIS_URL,
        "EMAIL_URL": smtp_sink.url,
        "RATE_LIMIT_KEY_PREFIX": f"test-rl:{uuid.uuid4().hex}",
    }

    worker_env = {"EMAIL_URL": smtp_sink.url, "RATE_LIMIT_KEY_PREFIX": env["RATE_LIMIT_KEY_PREFIX"]}
    # Beat runs beside the worker as in production: nudges are throttled, beat catches the rest.
    with (
        web_server(**env) as base,
        start_worker(queues="transactional", SITE_URL=base, **worker_env),
        celery_beat(tmp_path, **env, SITE_URL=base),
    ):
        with override_settings(SITE_URL=base):
            (site := tmp_path / "site").mkdir()
            (site / "index.html").write_text(
                "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
                f"<title>Someone else's site</title><h1>A blog</h1>{html_snippet(news, source='pottery-blog')}"
                f"<h2>Framed</h2>{iframe_snippet(news, source='pottery-blog-frame')}",
                encoding="utf-8",
            )
        # Playwright's sync API keeps an event loop in this thread; the ORM reads below are plain
        # blocking reads in the test's own thread (set after the servers started, so they don't inherit it).
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with second_origin(site) as other_site, chromium() as browser:
            # 1. The plain HTML form, with JavaScript off, posted across origins.
            phone = browser.new_context(java_script_enabled=False, **PHONE)
            page = phone.new_page()
            page.goto(other_site)
            page.fill("form[action$='/zine/subscribe'] input[name=email]", "fan@example.com")
            page.click("form[action$='/zine/subscribe'] button")
            page.wait_for_load_state()
            assert page.url == f"{base}/zine/subscribe"
            assert "Check your inbox" in page.content()
            assert phone.cookies() == []

            # 2. The confirmation email reaches the sink; a GET of its link (a scanner) confirms nothing.
            confirmation = mail_to(smtp_sink, "fan@example.com", "Confirm your subscription")
            link = re.search(
                r"https?://\S+/confirm/\S+", confirmation.get_body(("plain",)).get_content()
            ).group(0)
            page.goto(link)
            assert Subscription.objects.get(subscriber__email="fan@example.com").status == "pending"
            page.click("text=Yes, subscribe me")
            page.wait_for_selector("text=You're in!")

            subscription = Subscription.objects.get(subscriber__email="fan@example.com")
            assert subscription.status == "active" and subscription.confirmed_at is not None
            assert (subscription.source, subscription.consent_form) == ("pottery-blog", "embed")
            assert subscription.consent_ip == "127.0.0.1" and "Pixel 9" in subscription.consent_user_agent
            assert "receive emails from Zine" in subscription.consent_text

            # 3. The creator's welcome email arrives, with RFC 8058 headers; Gmail's POST unsubscribes.
            welcome = mail_to(smtp_sink, "fan@example.com", "Welcome to Zine")
            assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            unsubscribe_url = welcome["List-Unsubscribe"].strip("<>")
            assert unsubscribe_url.startswith(f"{base}/unsubscribe/")
            for _ in range(2):  # repeats answer 200 too
                answer = gmail_one_click(unsubscribe_url)
                assert answer.status == 200 and answer.getheader("Location") is None
                assert answer.getheader("Set-Cookie") is None
            subscription.refresh_from_db()
            assert subscription.status == "unsubscribed"
            phone.close()

            # 4. The framed form, JavaScript on: success shows inside the frame, the host page stays.
            phone = browser.new_context(**PHONE)
            page = phone.new_page()
            page.goto(other_site)
            frame = page.frame_locator("iframe")
            frame.locator("input[name=email]").fill("framed.fan@example.com")
            frame.locator("button[type=submit]").click()
            frame.locator("#signup-done").wait_for(state="visible")
            assert "Almost there" in frame.locator("#signup-done").inner_text()
            assert page.url.rstrip("/") == other_site
            framed = Subscription.objects.get(subscriber__email="framed.fan@example.com")
            assert (framed.status, framed.consent_form, framed.source) == (
                "pending",
                "iframe",
                "pottery-blog-frame",
            )
            mail_to(smtp_sink, "framed.fan@example.com", "Confirm your subscription")
            phone.close()
            # The reads above ran inside Playwright's context and got a connection of their own.
            connections.close_all()
