"""Signing up from the link-in-bio page, a short link or an embed: what is stored and what the fan is told."""

import pytest

from subscribers.models import OwedEmail, SourceLink, Subscriber, Subscription

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.usefixtures("fresh_rate_limits"),
]

PHONE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"


@pytest.fixture
def news(make_creator):
    _, newsletter = make_creator("zine")
    return newsletter


def post(client, newsletter, data, *, json_answer=False, ip="203.0.113.7", query=""):
    headers = {"HTTP_USER_AGENT": PHONE_UA, "REMOTE_ADDR": ip}
    if json_answer:
        headers["HTTP_ACCEPT"] = "application/json"
    return client.post(f"/{newsletter.slug}/subscribe{query}", data, **headers)


def test_a_signup_is_pending_with_its_consent_record_and_an_owed_confirmation(client, news):
    response = post(client, news, {"email": "Fan@Example.COM", "form": "page", "ref": "tiktok"})
    assert response.status_code == 200
    assert "Check your inbox" in response.content.decode()

    subscription = Subscription.objects.get()
    assert subscription.subscriber.email == "Fan@example.com"  # the domain is case-free
    assert subscription.status == Subscription.Status.PENDING
    assert subscription.source == "tiktok"
    assert subscription.consent_form == "page"
    assert "receive emails from Zine" in subscription.consent_text
    assert subscription.consent_ip == "203.0.113.7"
    assert subscription.consent_user_agent == PHONE_UA
    assert subscription.consent_at is not None and subscription.confirmed_at is None
    owed = OwedEmail.objects.get()
    assert (owed.subscription_id, owed.kind, owed.status) == (subscription.id, "confirmation", "pending")


def test_json_answers_for_scripts_and_cross_origin_posts(client, news):
    response = post(client, news, {"email": "a@example.com"}, json_answer=True)
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert response["Access-Control-Allow-Origin"] == "*"

    bad = post(client, news, {"email": "not an address"}, query="?format=json")
    assert bad.status_code == 400
    body = bad.json()
    assert body["ok"] is False and "valid email" in body["errors"]["email"][0]
    assert Subscription.objects.get().consent_form == "api"


def test_the_same_answer_whether_or_not_the_address_is_on_the_list(client, news, subscribe):
    subscribe(news, "old.fan@example.com", status=Subscription.Status.ACTIVE)
    subscribe(news, "bounced@example.com", status=Subscription.Status.BOUNCED)
    answers = [
        post(client, news, {"email": email}, json_answer=True).json()
        for email in ("new.fan@example.com", "old.fan@example.com", "bounced@example.com")
    ]
    assert answers[0] == answers[1] == answers[2]
    html = [post(client, news, {"email": e}).content for e in ("x@example.com", "old.fan@example.com")]
    assert html[0] == html[1]
    # The active fan is left alone (no email), the bounced address is not mailed again.
    mailed = set(OwedEmail.objects.values_list("subscription__subscriber__email", flat=True))
    assert mailed == {"new.fan@example.com", "x@example.com"}
    assert Subscription.objects.get(subscriber__email="old.fan@example.com").status == "active"


def test_signing_up_again_after_leaving_needs_a_new_confirmation(client, news, subscribe):
    subscribe(news, "back@example.com", status=Subscription.Status.UNSUBSCRIBED, source="youtube")
    post(client, news, {"email": "BACK@example.com", "ref": "instagram"})
    subscription = Subscription.objects.get()
    assert subscription.status == "pending" and subscription.source == "instagram"
    assert Subscriber.objects.count() == 1
    assert OwedEmail.objects.filter(subscription=subscription, kind="confirmation").count() == 1


def test_source_comes_from_ref_utm_source_or_a_short_link(client, news):
    page = client.get(f"/{news.slug}/?utm_source=YouTube Bio")
    assert 'name="ref" value="youtube-bio"' in page.content.decode()

    SourceLink.objects.create(newsletter=news, source="tiktok-bio", code="tt")
    short = client.get(f"/{news.slug}/r/tt")
    assert short.status_code == 200 and 'name="ref" value="tiktok-bio"' in short.content.decode()
    assert SourceLink.objects.get().visits == 1
    assert client.get(f"/{news.slug}/r/nope").status_code == 404

    post(client, news, {"email": "q@example.com"}, query="?utm_source=newsletter-swap")
    assert Subscription.objects.get().source == "newsletter-swap"


def test_the_honeypot_is_thanked_and_forgotten(client, news):
    response = post(
        client, news, {"email": "bot@example.com", "website": "http://spam.example"}, json_answer=True
    )
    assert response.json()["ok"] is True
    assert not Subscription.objects.exists() and not OwedEmail.objects.exists()


def test_blocked_domains_get_a_clear_error(client, news, settings):
    news.blocked_domains = "mailinator.com\n@spam.example"
    news.save()
    settings.SIGNUP_BLOCKED_DOMAINS = ["throwaway.example"]
    for email in ("a@mailinator.com", "b@sub.spam.example", "c@THROWAWAY.example"):
        response = post(client, news, {"email": email}, json_answer=True)
        assert response.status_code == 400, email
        assert "does not take addresses at" in response.json()["message"]
    page = post(client, news, {"email": "a@mailinator.com"})
    assert page.status_code == 400 and "does not take addresses at mailinator.com" in page.content.decode()
    assert post(client, news, {"email": "ok@notmailinator.com"}).status_code == 200
    assert Subscription.objects.count() == 1


@pytest.mark.parametrize(
    "email, name",
    [
        ("", ""),
        ("a@b", ""),
        ("x" * 250 + "@example.com", ""),
        ("fan@example.com\r\nBcc: victim@example.com", ""),
        ("fan@exam\u202eple.com", ""),
        ("fan@example.com", "Eve\nBcc: x@example.com"),
        ("fan@example.com", "n" * 201),
    ],
)
def test_invalid_input_is_refused_with_a_clear_error_on_the_page(client, news, email, name):
    response = post(client, news, {"email": email, "name": name})
    assert response.status_code == 400
    assert 'class="error"' in response.content.decode()
    assert not Subscription.objects.exists()


def test_an_oversized_post_is_refused_before_parsing(client, news):
    response = post(client, news, {"email": "a@example.com", "name": "x" * 20000}, json_answer=True)
    assert response.status_code == 413
    assert response.json()["ok"] is False


def test_a_flood_from_one_ip_is_throttled_while_another_ip_still_subscribes(client, news, settings):
    settings.SIGNUP_RATE_PER_IP = "5/600"
    statuses = [
        post(client, news, {"email": f"f{i}@example.com"}, ip="198.51.100.9").status_code for i in range(8)
    ]
    assert statuses == [200] * 5 + [429] * 3
    throttled = post(client, news, {"email": "f9@example.com"}, ip="198.51.100.9", json_answer=True)
    assert throttled.status_code == 429 and "Too many signups" in throttled.json()["message"]
    assert int(throttled["Retry-After"]) > 0
    assert post(client, news, {"email": "other@example.com"}, ip="192.0.2.44").status_code == 200
    assert Subscription.objects.count() == 6


def test_ipv6_clients_are_limited_per_64(client, news, settings):
    settings.SIGNUP_RATE_PER_IP = "2/600"
    answers = [
        post(client, news, {"email": f"v{i}@example.com"}, ip=f"2001:db8:1:2::{i + 1}").status_code
        for i in range(3)
    ]
    assert answers == [200, 200, 429]


def test_one_address_cannot_be_mail_bombed(client, news, settings):
    settings.SIGNUP_RATE_PER_ADDRESS = "2/3600"
    answers = {
        post(client, news, {"email": "target@example.com"}, ip=f"192.0.2.{i}").content for i in range(5)
    }
    assert len(answers) == 1  # the same answer each time
    assert OwedEmail.objects.count() == 2


def test_the_iframe_form_answers_inside_the_frame(client, news):
    embed = client.get(f"/{news.slug}/embed?ref=blog")
    assert embed.status_code == 200
    assert "X-Frame-Options" not in embed and "frame-ancestors *" in embed["Content-Security-Policy"]
    assert 'name="form" value="iframe"' in embed.content.decode()
    done = post(client, news, {"email": "i@example.com", "form": "iframe", "ref": "blog"})
    assert "X-Frame-Options" not in done
    assert "Almost there" in done.content.decode() and "signup-done" in done.content.decode()
    assert Subscription.objects.get().consent_form == "iframe"


def test_public_pages_set_no_cookie(client, news):
    for response in (client.get(f"/{news.slug}/"), post(client, news, {"email": "c@example.com"})):
        assert not response.cookies


def test_a_get_to_subscribe_goes_to_the_page(client, news):
    response = client.get(f"/{news.slug}/subscribe")
    assert response.status_code == 302 and response["Location"] == f"/{news.slug}/"


def test_an_unknown_newsletter_is_404(client):
    assert client.post("/nobody/subscribe", {"email": "a@example.com"}).status_code == 404
    assert client.get("/nobody/").status_code == 404


def test_behind_a_proxy_the_client_is_the_last_forwarded_hop(client, news, settings):
    settings.CLIENT_IP_FROM_FORWARDED_FOR = True
    response = client.post(
        f"/{news.slug}/subscribe",
        {"email": "p@example.com"},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.50",  # the first hop is whatever the client claimed
    )
    assert response.status_code == 200
    assert Subscription.objects.get().consent_ip == "203.0.113.50"
