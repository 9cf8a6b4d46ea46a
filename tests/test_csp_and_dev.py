"""Content-Security-Policy on every kind of page (headers, then real Chromium), and `make run`
(scripts/dev.py) on another address: its links point there, and SIGTERM or SIGINT stops it all."""

import base64
import concurrent.futures
import contextlib
import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from django.utils import timezone

from delivery.models import OutboxMessage
from newsletters.embed import iframe_snippet
from newsletters.models import Issue, SocialLink
from subscribers.models import Subscription
from subscribers.tokens import make_token

from .browser import PHONE, chromium, second_origin
from .servers import ROOT, free_port, get, project_env, web_server

NONE, SELF = "'none'", "'self'"


def policy(response):
    """The Content-Security-Policy header as {directive: [values]}; exactly one policy."""
    assert "Content-Security-Policy-Report-Only" not in response
    directives = {}
    for part in response["Content-Security-Policy"].split(";"):
        name, *values = part.split()
        assert name not in directives
        directives[name] = values
    return directives


def nonces(values):
    return {value[len("'nonce-") : -1] for value in values if value.startswith("'nonce-")}


def sha256_source(text):
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


INLINE_BLOCK = re.compile(r"<(script|style)\b([^>]*)>(.*?)</\1>", re.IGNORECASE | re.DOTALL)
INLINE_ATTRIBUTE = re.compile(r"<[a-z][^>]*?\s(style|on[a-z]+)\s*=", re.IGNORECASE)


def assert_strict(response, *, frame_ancestors=NONE, admin=False, connect=False, to_stripe=False):
    """The page's policy allows nothing by default and no inline code but its own blocks, and the
    page holds nothing the policy would block: every <script>/<style> block is named by the policy
    (public pages: by hash, the same in every answer; the admin: by this response's nonce), and no
    element has a style= or on…= attribute."""
    directives = policy(response)
    assert directives["default-src"] == [NONE]
    assert directives["base-uri"] == [NONE]
    # Pages whose forms end at Stripe (Checkout, the Customer Portal) name those origins, nothing else.
    assert directives["form-action"] == [SELF, *(settings.STRIPE_PAGE_ORIGINS if to_stripe else [])]
    assert directives["frame-ancestors"] == [frame_ancestors]
    for name, values in directives.items():
        for value in values:
            assert value not in ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "data:"), (name, value)
            assert value != "*" or name == "frame-ancestors", (name, value)
    for name in ("script-src", "style-src"):
        for value in directives.get(name, []):
            if admin:
                assert value == SELF or value.startswith("'nonce-"), (name, value)
            else:
                assert value.startswith("'sha256-"), (name, value)
    assert directives.get("connect-src", []) == ([SELF] if connect else [])
    html = response.content.decode()
    for tag, attributes, body in INLINE_BLOCK.findall(html):
        allowed = directives.get(f"{tag.lower()}-src", [])
        if tag.lower() == "script" and re.search(r"\bsrc=", attributes):
            assert admin and SELF in allowed, attributes  # only the admin loads scripts, its own
            continue
        nonce = re.search(r'\bnonce="([^"]+)"', attributes)
        named = f"'nonce-{nonce.group(1)}'" in allowed if nonce else sha256_source(body) in allowed
        assert named, f"<{tag}{attributes}>{body[:80]}… is not named by the policy"
    without_blocks = INLINE_BLOCK.sub("", html)
    attribute = INLINE_ATTRIBUTE.search(without_blocks)
    assert attribute is None, without_blocks[max(0, attribute.start() - 80) : attribute.end() + 80]
    return directives


@pytest.fixture
def zine(make_creator, subscribe):
    creator, newsletter = make_creator("zine")
    newsletter.description = "Notes on ceramics."
    newsletter.avatar_url = "https://cdn.example/avatar.jpg"
    newsletter.postal_address = "1 Letter Lane, Hanoi"
    newsletter.sender_email = "zine@sender.example"
    newsletter.save()
    SocialLink.objects.create(newsletter=newsletter, label="TikTok", url="https://www.tiktok.com/@zine", position=1)
    Issue.objects.create(
        newsletter=newsletter, title="First", slug="first", status="sent", sent_at=timezone.now(),
        body_markdown="Hello {{ name }}.\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n\n![pot](https://cdn.example/pot.jpg)",
    )
    newsletter.creator = creator
    newsletter.subscription = subscribe(newsletter, "fan@fans.example")
    return newsletter


# 1. The header on each kind of page.


@pytest.mark.django_db
@pytest.mark.postgres
def test_public_pages_have_a_strict_policy_and_nothing_it_would_block(client, zine, fresh_rate_limits):
    token = {purpose: make_token(purpose, zine.subscription.id) for purpose in ("confirm", "unsubscribe", "preferences")}
    pages = {
        "bio page": client.get("/zine/"),
        "bio page with a source": client.get("/zine/?ref=tiktok"),
        "signup answer": client.post("/zine/subscribe", {"email": "new@fans.example", "form": "page"}),
        "signup error": client.post("/zine/subscribe", {"email": "not an address", "form": "page"}),
        "archive": client.get("/zine/issues/"),
        "issue": client.get("/zine/issues/first/"),
        "confirm": client.get(f"/confirm/{token['confirm']}"),
        "unsubscribe": client.get(f"/unsubscribe/{token['unsubscribe']}"),
        "unsubscribed": client.post(f"/unsubscribe/{token['unsubscribe']}", {"List-Unsubscribe": "One-Click"}),
        "preferences": client.get(f"/preferences/{token['preferences']}"),
        "bad link": client.get("/confirm/not-a-token"),
    }
    for name, response in pages.items():
        assert response.status_code in (200, 400, 404), name
        directives = assert_strict(response, to_stripe=name in ("bio page", "bio page with a source", "signup error"))
        assert directives["img-src"] == [SELF, "https:", "http:"], name  # avatars, issue pictures
        assert response["X-Frame-Options"] == "DENY", name
    # Signup answers stay the same bytes whatever the address (and the pages can be cached): no nonce.
    again = client.post("/zine/subscribe", {"email": "fan@fans.example", "form": "page"})
    assert again.content == pages["signup answer"].content
    assert again["Content-Security-Policy"] == pages["signup answer"]["Content-Security-Policy"]
    # The pieces that were inline attributes are still styled, by classes.
    assert 'class="muted consent"' in pages["bio page"].content.decode()
    assert 'class="muted after"' in pages["unsubscribe"].content.decode()


@pytest.mark.django_db
@pytest.mark.postgres
def test_the_embed_is_frameable_from_anywhere_and_nothing_else_is_loosened(client, zine, fresh_rate_limits):
    embeds = {
        "form": client.get("/zine/embed?ref=blog"),
        "done": client.post("/zine/subscribe", {"email": "framed@fans.example", "form": "iframe"}),
        "error": client.post("/zine/subscribe", {"email": "nope", "form": "iframe"}),
    }
    for name, response in embeds.items():
        assert response.status_code in (200, 400), name
        assert_strict(response, frame_ancestors="*", connect=True)  # its script posts the form here
        assert "X-Frame-Options" not in response, name
    assert "<script>" in embeds["form"].content.decode()
    assert "<script" not in embeds["done"].content.decode()
    # A JSON answer is data, but it gets the public policy too.
    answer = client.post("/zine/subscribe", {"email": "api@fans.example"}, HTTP_ACCEPT="application/json")
    assert answer.json()["ok"] and policy(answer)["frame-ancestors"] == [NONE]


@pytest.mark.django_db
@pytest.mark.postgres
def test_the_admin_has_its_own_strict_policy(client, zine, make_creator):
    login = client.get("/admin/login/")
    admin_policy = assert_strict(login, admin=True, connect=True)
    assert admin_policy["img-src"] == [SELF] and admin_policy["frame-src"] == [SELF]

    client.force_login(zine.creator)
    issue = Issue.objects.create(newsletter=zine, title="Second", slug="second", body_markdown="Hi.")
    assert_strict(client.get("/admin/"), admin=True, connect=True)
    assert_strict(client.get("/admin/newsletters/issue/"), admin=True, connect=True)
    draft = client.get(f"/admin/newsletters/issue/{issue.pk}/change/")
    assert 'id="send-buttons"' in draft.content.decode()
    assert_strict(draft, admin=True, connect=True)
    Issue.objects.filter(pk=issue.pk).update(status="sending")
    sending = client.get(f"/admin/newsletters/issue/{issue.pk}/change/")
    assert "fetch(" in sending.content.decode()  # the progress poll, with the nonce
    assert_strict(sending, admin=True, connect=True)


@pytest.mark.django_db
@pytest.mark.postgres
def test_the_dev_outbox_preview_is_served_on_its_own_sandboxed_and_scoped(client, zine, make_creator):
    html = '<!DOCTYPE html><html><head><title>x</title></head><body style="background:#f4f4f5">Hi</body></html>'
    message = OutboxMessage.objects.create(
        mailer="default", newsletter=zine, newsletter_slug="zine", from_email="zine@sender.example", to="fan@fans.example",
        subject="Hello", text_body="Hi", html_body=html, raw=b"",
    )
    client.force_login(zine.creator)
    page = client.get(f"/admin/delivery/outboxmessage/{message.pk}/change/")
    assert_strict(page, admin=True, connect=True)
    assert f'src="/admin/outbox/{message.pk}/html"' in page.content.decode()

    preview = client.get(f"/admin/outbox/{message.pk}/html")
    assert preview.status_code == 200 and preview["X-Frame-Options"] == "SAMEORIGIN"
    assert preview.content.decode() == html.replace("<head>", '<head><base target="_blank">')
    directives = policy(preview)
    assert directives["default-src"] == [NONE] and "script-src" not in directives
    assert directives["style-src"] == ["'unsafe-inline'"]  # an email's own styles, in a frame with no script
    assert directives["sandbox"] == ["allow-popups", "allow-popups-to-escape-sandbox"]
    assert directives["frame-ancestors"] == [SELF] and directives["form-action"] == [NONE]

    other, _ = make_creator("other")
    client.force_login(other)
    assert client.get(f"/admin/outbox/{message.pk}/html").status_code == 404
    client.logout()
    assert client.get(f"/admin/outbox/{message.pk}/html").status_code == 302  # to the login page


@pytest.mark.django_db
@pytest.mark.postgres
def test_the_newsletter_admin_page_has_nothing_the_policy_would_block(client, zine):
    client.force_login(zine.creator)
    page = client.get(f"/admin/newsletters/newsletter/{zine.pk}/change/")
    assert page.status_code == 200
    assert_strict(page, admin=True, connect=True)


# 2. In real Chromium: no violation, and everything still works.

WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI} ${event.sourceFile}:${event.lineNumber}`);
});
"""


@contextlib.contextmanager
def browser_session():
    """Chromium; the ORM calls the test makes meanwhile get connections of their own, closed here."""
    with chromium() as browser:
        try:
            yield browser
        finally:
            connections.close_all()


class Violations:
    """Every CSP violation a browser context sees: console messages and `securitypolicyviolation`
    events, from every frame."""

    def __init__(self, context):
        self.console = []
        context.add_init_script(WATCH_VIOLATIONS)
        context.on("console", self._on_console)
        self.pages = []

    def _on_console(self, message):
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.console.append(message.text)

    def watch(self, page):
        self.pages.append(page)
        return page

    def all(self):
        from playwright.sync_api import Error as PlaywrightError

        seen = list(self.console)
        for page in self.pages:
            for frame in page.frames:
                try:
                    seen += frame.evaluate("window.__violations || []")
                except PlaywrightError:  # a frame that went away meanwhile
                    continue
        return seen


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.redis
def test_in_chromium_the_bio_page_and_the_embed_on_another_site_break_no_rule(
    make_creator, database_url, tmp_path, monkeypatch
):
    _, news = make_creator("zine")
    news.description = "Notes on ceramics."
    news.save()
    SocialLink.objects.create(newsletter=news, label="TikTok", url="https://www.tiktok.com/@zine", position=1)
    Issue.objects.create(
        newsletter=news, title="First", slug="first", status="sent", sent_at=timezone.now(),
        body_markdown="Hello.\n\n| a | b |\n|:--|--:|\n| 1 | 2 |",
    )
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.REDIS_URL,
        "EMAIL_URL": "outbox://",
        "RATE_LIMIT_KEY_PREFIX": f"test-rl:{uuid.uuid4().hex}",
    }
    (site := tmp_path / "site").mkdir()
    # The creator's avatar is served by another site: img-src lets it through.
    (site / "avatar.gif").write_bytes(
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
        b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )
    with web_server(**env) as base, second_origin(site) as other_site:
        news.avatar_url = f"{other_site}/avatar.gif"
        news.save()
        with monkeypatch.context() as patch:
            patch.setattr(settings, "SITE_URL", base)
            snippet = iframe_snippet(news, source="pottery-blog-frame")
        (site / "index.html").write_text(
            f"<!doctype html><meta charset=utf-8><title>Someone else's site</title><h1>A blog</h1>{snippet}",
            encoding="utf-8",
        )
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with browser_session() as browser:
            context = browser.new_context(**PHONE)
            violations = Violations(context)

            # The bio page: styled (its nonce'd <style> applied), the avatar shown.
            page = violations.watch(context.new_page())
            page.goto(f"{base}/zine/")
            assert page.evaluate("getComputedStyle(document.querySelector('.card')).borderRadius") == "16px"
            assert page.evaluate("getComputedStyle(document.querySelector('.consent')).marginTop") == "12px"
            assert page.evaluate("document.querySelector('img.avatar').naturalWidth") == 1
            page.goto(f"{base}/zine/issues/first/")
            assert page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth") == "680px"

            # The embed in someone else's page: framed, styled, and its script signs the fan up in place.
            host = violations.watch(context.new_page())
            host.goto(other_site)
            frame = host.frame_locator("iframe")
            frame.locator("input[name=email]").fill("framed.fan@example.com")
            frame.locator("button[type=submit]").click()
            frame.locator("#signup-done").wait_for(state="visible")
            assert host.url.rstrip("/") == other_site  # shown in place: the script ran, no reload
            embedded = next(f for f in host.frames if f.url.startswith(f"{base}/zine/embed"))
            assert embedded.evaluate("getComputedStyle(document.querySelector('h2 a')).textDecorationLine") == "none"
            framed = Subscription.objects.get(subscriber__email="framed.fan@example.com")
            assert (framed.status, framed.consent_form, framed.source) == ("pending", "iframe", "pottery-blog-frame")

            assert violations.all() == []
            context.close()

            # The bio page, though, may not be framed by another site.
            (site / "framed-bio.html").write_text(f"<!doctype html><iframe src='{base}/zine/'></iframe>")
            framer = browser.new_page()
            blocked = []
            framer.on("console", lambda message: blocked.append(message.text))
            framer.goto(f"{other_site}/framed-bio.html")
            framer.wait_for_timeout(500)
            assert any("frame-ancestors 'none'" in text for text in blocked), blocked
            framer.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.redis
def test_in_chromium_the_admin_send_page_and_outbox_preview_break_no_rule(
    ready_issue, database_url, monkeypatch
):
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    issue, _ = ready_issue(n=2)
    creator = issue.newsletter.owners.get()
    creator.password = PBKDF2PasswordHasher().encode("a-long-creator-password", "browser-test-salt")
    creator.save()
    # DEBUG only so that the admin's static files are served without a collectstatic step.
    env = {"DATABASE_URL": database_url, "REDIS_URL": settings.REDIS_URL, "EMAIL_URL": "outbox://", "DEBUG": "true"}
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with web_server(**env) as base, browser_session() as browser:
        context = browser.new_context()
        violations = Violations(context)
        page = violations.watch(context.new_page())
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", creator.username)
        page.fill("#id_password", "a-long-creator-password")
        page.click("input[type=submit]")
        page.wait_for_url(f"{base}/admin/")

        # The send page: styled by the admin's own files, its buttons laid out by the nonce'd style.
        page.goto(f"{base}/admin/newsletters/issue/{issue.pk}/change/")
        assert page.evaluate("getComputedStyle(document.querySelector('#send-buttons')).flexWrap") == "wrap"
        page.fill("input[name=to]", "me@creator.example")
        page.click("text=Send a test")
        page.wait_for_load_state()
        assert "A test copy went to me@creator.example" in page.content()

        # The test copy in the dev outbox, previewed in its frame with the email's own inline styles.
        message = OutboxMessage.objects.get(to__contains="me@creator.example")
        page.goto(f"{base}/admin/delivery/outboxmessage/{message.pk}/change/")
        preview = page.frame_locator("#outbox-html")
        preview.locator("text=Issue one").first.wait_for()
        framed = next(f for f in page.frames if f.url.endswith(f"/admin/outbox/{message.pk}/html"))
        assert framed.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 246, 244)"
        assert framed.evaluate("document.querySelector('base').target") == "_blank"

        # While it sends, the page polls its progress (a nonce'd script, fetch to this site) and
        # reloads by itself once the send is over.
        Issue.objects.filter(pk=issue.pk).update(status="sending")
        page.goto(f"{base}/admin/newsletters/issue/{issue.pk}/change/")
        with page.expect_request(lambda request: request.url.endswith(f"/{issue.pk}/progress.json")):
            pass
        Issue.objects.filter(pk=issue.pk).update(status="sent", sent_at=timezone.now())
        page.wait_for_selector("#send-status:has-text('Sent')", timeout=15_000)

        assert violations.all() == []
        context.close()


# 3. `make run` on another address, and stopping it.


def _descendants(pid):
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *_descendants(child)]
    return found


def _running(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _post(url, data):
    request = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode())
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.status, response.read().decode()


@pytest.mark.parametrize(
    "how", ["SIGTERM to the process group", "SIGINT to the process group", "SIGTERM to the script"]
)
def test_make_run_on_another_address_links_there_and_stops_at_once(tmp_path, how):
    if not Path("/proc/self/task").exists():
        pytest.skip("needs /proc to find the processes")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = project_env(
        VAR_DIR=tmp_path, DATABASE_URL="", REDIS_URL="", DEBUG="true", SECRET_KEY="", EMAIL_URL="outbox://",
        RUN_ADDRESS=f"127.0.0.1:{port}",
    )
    env.pop("SITE_URL", None)  # the default: where make run serves
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "scripts/dev.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    processes = []
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if get(f"{base}/demo/", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)
        while not ("ready." in log_path.read_text() and "beat: Starting" in log_path.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)  # the worker, its pool and beat are all up
        _, page = get(f"{base}/demo/")
        assert f'<meta property="og:url" content="{base}/demo/">' in page
        assert f'<link rel="canonical" href="{base}/demo/">' in page
        assert ":8000" not in page

        if how.startswith("SIGTERM to the process group"):
            # Links in emails too, and signups in bursts while the worker and beat write to the same
            # SQLite file: nothing is "database is locked".
            with concurrent.futures.ThreadPoolExecutor(5) as pool:
                for burst in range(4):
                    emails = [f"fan{burst}-{n}@example.com" for n in range(5)]
                    answers = pool.map(lambda email: _post(f"{base}/demo/subscribe", {"email": email}), emails)
                    assert [status for status, _ in answers] == [200] * 5
            database = sqlite3.connect(tmp_path / "ownedaudience.sqlite3", timeout=20)
            deadline = time.monotonic() + 60
            bodies = []
            while len(bodies) < 20 and time.monotonic() < deadline:
                bodies = [row[0] for row in database.execute(
                    "select text_body from newsletters_outboxmessage where \"to\" like 'fan%@example.com'"
                )]
                time.sleep(0.5)
            database.close()
            assert len(bodies) == 20, log_path.read_text()[-3000:]
            assert all(f"{base}/confirm/" in body for body in bodies)
            assert "database is locked" not in log_path.read_text()

        processes = [process.pid, *_descendants(process.pid)]
        assert len(processes) >= 6, processes  # the script, runserver, the worker, its 2 pool processes, beat
        sent_at = time.monotonic()
        if how == "SIGTERM to the script":
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGTERM if how.startswith("SIGTERM") else signal.SIGINT)
        while any(_running(pid) for pid in processes) and time.monotonic() - sent_at < 20:
            time.sleep(0.1)
        took = time.monotonic() - sent_at
        left = [pid for pid in processes if _running(pid)]
        assert not left and took < 10, (took, left, log_path.read_text()[-3000:])
        assert "did not stop" not in log_path.read_text()
    finally:
        # Whatever is left of what this test started.
        for pid in [*processes, *_descendants(process.pid), process.pid]:
            if _running(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        process.wait(timeout=30)
