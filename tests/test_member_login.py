"""Members log in on the site with a code sent by email: what a member (or someone probing) would notice."""

import logging
import re
import time
import uuid

import pytest
from django.conf import settings as django_settings
from kombu.exceptions import OperationalError

from pages import members
from billing.members import member_user_ensure
from subscribers.models import Subscription

from .test_csp_and_dev import assert_strict

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.redis]

CODE = re.compile(r"^ +([A-Z]{4}-[A-Z]{4})\r?$", re.MULTILINE)
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"')


@pytest.fixture(autouse=True)
def own_rate_limits(settings):
    """allauth counts code requests in the cache: a key prefix of this test's own, so no other test
    (or an earlier run within the window) has spent this one's allowance."""
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-login:{uuid.uuid4().hex}"}}


@pytest.fixture
def eager_tasks():
    """The code email's task runs where it is published, into pytest-django's `mailoutbox`."""
    from ownedaudience.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def zine(make_creator):
    return make_creator("zine")[1]


@pytest.fixture
def member(zine, subscribe):
    """A paying member of Zine, with the login billing makes for them."""
    subscribe(zine, "Ann@Fans.example", tier=Subscription.Tier.PAID)
    return member_user_ensure("Ann@Fans.example")[0]


def ask_for_code(client, email, next_url="", **headers):
    """As from a new browser: while a code is pending, allauth sends the login page on to the code page."""
    client.cookies.clear()
    return client.post("/account/login/" + (f"?next={next_url}" if next_url else ""), {"email": email}, **headers)


def sent_to(mailoutbox, address):
    return [message for message in mailoutbox if message.to == [address]]


def html_of(message):
    return {mimetype: content for content, mimetype in message.alternatives}["text/html"]


def code_in(text):
    return CODE.search(text).group(1)


def logged_in_as(client):
    response = client.get("/account/")
    return response.context["user"].email if response.status_code == 200 else None


def test_billing_makes_one_passwordless_login_per_address_and_leaves_creators_alone(make_creator):
    user, created = member_user_ensure(" Bea@Fans.EXAMPLE ")
    assert created and (user.username, user.email) == ("bea@fans.example", "bea@fans.example")
    assert not user.is_staff and not user.has_usable_password()
    assert member_user_ensure("bea@fans.example") == (user, False)
    creator, _ = make_creator("pots", "Potter@Studio.example")
    assert member_user_ensure("POTTER@studio.example") == (creator, False)
    creator.refresh_from_db()
    assert creator.is_staff and creator.check_password(creator.plain_password)


def test_a_member_logs_in_with_the_code_a_worker_emailed_and_sees_their_membership(
    client, zine, subscribe, smtp_sink, start_worker
):
    address = f"cat-{uuid.uuid4().hex[:8]}@fans.example"  # a run stopped midway leaves no look-alike in the queue
    subscribe(zine, address, tier=Subscription.Tier.PAID)
    member_user_ensure(address)
    with start_worker(queues="transactional", EMAIL_URL=smtp_sink.url):
        asked = ask_for_code(client, address, next_url="/zine/issues/")
        assert asked.status_code == 302 and asked["Location"] == "/account/login/code/?next=%2Fzine%2Fissues%2F"
        deadline = time.monotonic() + 30
        while not smtp_sink.to(address) and time.monotonic() < deadline:
            time.sleep(0.1)
    [received] = smtp_sink.to(address)
    message = received.message
    assert message["Subject"] == "Your login code" and message["From"] == django_settings.DEFAULT_FROM_EMAIL
    text, html = message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()
    code = code_in(text)
    assert code in html and "font-size:36px" in html
    assert "expires in 3 minutes" in text

    page = client.get(asked["Location"])
    assert address in page.content.decode() and logged_in_as(client) is None
    done = client.post(asked["Location"], {"code": code.lower().replace("-", "")})  # as a phone may type it
    assert done.status_code == 302 and done["Location"] == "/zine/issues/"
    assert logged_in_as(client) == address
    account = client.get("/account/").content.decode()
    assert "Zine" in account and "Paid membership" in account and 'href="/zine/issues/"' in account


def test_a_wrong_code_is_refused_and_after_the_last_try_the_code_is_dead(client, member, eager_tasks, mailoutbox):
    asked = ask_for_code(client, "ann@fans.example")
    code = code_in(mailoutbox[0].body)
    for _ in range(2):
        wrong = client.post(asked["Location"], {"code": "BCDF-GHJK" if code != "BCDF-GHJK" else "ZZZZ-ZZZZ"})
        assert wrong.status_code == 200 and "That code is not right" in wrong.content.decode()
    last = client.post(asked["Location"], {"code": "ZZZZ-ZZZZ" if code != "ZZZZ-ZZZZ" else "BCDF-GHJK"}, follow=True)
    assert last.redirect_chain[-1][0] == "/account/login/"
    assert "Too many attempts. Wait a few minutes, then ask for a new code." in last.content.decode()
    late = client.post(asked["Location"], {"code": code})
    assert late.status_code == 302 and late["Location"] == "/account/login/"
    assert logged_in_as(client) is None


def test_a_member_without_the_email_asks_again_from_the_code_page(client, member, eager_tasks, mailoutbox):
    asked = ask_for_code(client, "ann@fans.example", next_url="/zine/issues/")
    assert client.get("/account/login/")["Location"] == "/account/login/code/"  # a pending code keeps them there
    again = client.post("/account/logout/", {"next": "/account/login/?next=/zine/issues/"})  # "Ask for a new code"
    assert again["Location"] == "/account/login/?next=/zine/issues/"
    assert client.get(again["Location"]).status_code == 200
    assert client.post(again["Location"], {"email": "ann@fans.example"})["Location"] == asked["Location"]
    assert len(mailoutbox) == 2 and code_in(mailoutbox[0].body) != code_in(mailoutbox[1].body)


def test_an_unknown_address_or_a_creators_gets_the_same_answer_and_no_email(
    client, member, zine, eager_tasks, mailoutbox
):
    def answer(email):
        asked = ask_for_code(client, email, next_url="/zine/issues/")
        page = client.get(asked["Location"])
        return asked.status_code, asked["Location"], CSRF.sub("", page.content.decode().replace(email, "ADDRESS"))

    known = answer("ann@fans.example")
    assert answer("nobody@fans.example") == known
    assert answer(zine.owners.get().email) == known  # creators log in at /admin/, with their password
    assert [message.to for message in mailoutbox] == [["ann@fans.example"]]


def test_too_many_code_requests_are_refused_with_a_clear_message(client, member, eager_tasks, mailoutbox):
    refused = "Too many attempts. Wait a few minutes, then ask for a new code."
    for _ in range(3):
        assert ask_for_code(client, "ann@fans.example").status_code == 302
    fourth = ask_for_code(client, "ann@fans.example")
    assert fourth.status_code == 200 and refused in fourth.content.decode()
    assert len(sent_to(mailoutbox, "ann@fans.example")) == 3  # nobody can mail-bomb an address

    crowd = {"REMOTE_ADDR": "203.0.113.7"}
    for n in range(20):
        assert ask_for_code(client, f"guess{n}@fans.example", **crowd).status_code == 302
    again = ask_for_code(client, "bea@fans.example", **crowd)
    assert again.status_code == 200 and refused in again.content.decode()
    assert ask_for_code(client, "bea@fans.example", REMOTE_ADDR="198.51.100.9").status_code == 302


def test_in_vietnamese_the_pages_and_the_email_follow_the_browser(client, member, zine, eager_tasks, mailoutbox):
    page = client.get("/account/login/?next=/zine/issues/", HTTP_ACCEPT_LANGUAGE="vi")
    html = page.content.decode()
    assert '<html lang="vi">' in html and "Đăng nhập" in html and "Thành viên của Zine" in html
    asked = ask_for_code(client, "ann@fans.example", HTTP_ACCEPT_LANGUAGE="vi")
    [email] = mailoutbox
    assert email.subject == "Mã đăng nhập của bạn"
    assert "Mã hết hạn sau 3 phút" in email.body and "Mã hết hạn sau 3 phút" in html_of(email)

    client.cookies[django_settings.LANGUAGE_COOKIE_NAME] = "vi"
    wrong = client.post(asked["Location"], {"code": "ZZZZ-ZZZZ"})
    assert "Nhập mã của bạn" in wrong.content.decode() and "Mã chưa đúng" in wrong.content.decode()
    client.post(asked["Location"], {"code": code_in(email.body)})
    account = client.get("/account/").content.decode()
    assert "Tài khoản của bạn" in account and "Thành viên trả phí" in account and "Đăng xuất khỏi tài khoản" in account


def test_the_account_page_needs_a_login_and_lists_only_memberships(client, member, make_creator, subscribe):
    assert client.get("/account/")["Location"] == "/account/login/?next=/account/"
    _, gifts = make_creator("gifts")
    _, free = make_creator("freebies")
    subscribe(gifts, "ann@fans.example", status=Subscription.Status.UNSUBSCRIBED, tier=Subscription.Tier.COMPED)
    subscribe(free, "ann@fans.example")
    client.force_login(member)
    account = client.get("/account/")
    assert [s.newsletter.slug for s in account.context["memberships"]] == ["gifts", "zine"]
    assert "Complimentary membership" in account.content.decode()  # emails off, still a member
    assert "Freebies" not in account.content.decode()
    assert client.post("/account/logout/")["Location"] == "/account/login/"
    assert logged_in_as(client) is None


def test_the_login_pages_name_the_newsletter_and_go_back_only_to_this_site(
    client, member, zine, eager_tasks, mailoutbox
):
    assert "Members of Zine" in client.get("/account/login/?next=/zine/issues/first/").content.decode()
    assert "Members of" not in client.get("/account/login/?next=https://evil.example/zine/").content.decode()
    asked = ask_for_code(client, "ann@fans.example", next_url="https://evil.example/zine/")
    done = client.post(asked["Location"], {"code": code_in(mailoutbox[0].body)})
    assert done["Location"] == "/account/"


def test_the_member_pages_offer_no_password_and_no_signup(client):
    page = client.get("/account/login/").content.decode()
    assert 'type="password"' not in page and 'name="email"' in page
    for path in ("/account/signup/", "/account/password/reset/", "/accounts/login/", "/account/email/"):
        assert client.get(path).status_code == 404, path


def test_the_member_pages_have_the_sites_strict_policy(client, member, eager_tasks):
    pages = {"login": client.get("/account/login/?next=/zine/issues/")}
    pages["code"] = client.get(ask_for_code(client, "ann@fans.example")["Location"])
    client.force_login(member)
    pages.update(account=client.get("/account/"), logout=client.get("/account/logout/"))
    for name, response in pages.items():
        assert response.status_code == 200, name
        assert_strict(response, to_stripe=name == "account")  # its "Manage billing" ends at Stripe's portal


def test_with_redis_away_a_member_still_gets_a_code_sent_from_the_request(
    client, member, settings, monkeypatch, caplog, mailoutbox
):
    """Redis is both the cache that counts requests and the broker: both are away here."""

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}
    monkeypatch.setattr(members.send_login_email, "apply_async", broker_down)
    with caplog.at_level(logging.WARNING, logger="pages.members"):
        unknown = ask_for_code(client, "nobody@fans.example")
        asked = ask_for_code(client, "ann@fans.example")
        assert unknown["Location"] == asked["Location"]
    [email] = mailoutbox
    assert email.to == ["ann@fans.example"] and email.subject == "Your login code"
    assert "the cache did not answer" in caplog.text and "the broker did not answer" in caplog.text
    assert client.post(asked["Location"], {"code": code_in(email.body)})["Location"] == "/account/"


def test_a_creator_still_logs_in_to_the_admin_with_their_password(client, make_creator):
    creator, _ = make_creator("carol", "carol@example.com")
    response = client.post("/admin/login/", {"username": "carol@example.com", "password": creator.plain_password,
                                             "next": "/admin/"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert logged_in_as(client) == "carol@example.com"  # the same session opens their own account page
