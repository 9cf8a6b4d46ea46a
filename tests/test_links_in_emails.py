"""The links a fan gets by email: confirm (POST only), RFC 8058 one-click unsubscribe, preferences."""

import pytest
from django.test import Client
from django.urls import reverse

from subscribers.models import OwedEmail, Subscription
from subscribers.tokens import make_token

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def news(make_creator):
    _, newsletter = make_creator("zine")
    return newsletter


@pytest.fixture
def strict_client():
    """A client that enforces CSRF and keeps no cookies, like a mail provider's server."""
    return Client(enforce_csrf_checks=True)


def confirm_path(subscription):
    return reverse("subscribers:confirm", args=[make_token("confirm", subscription.id)])


def unsubscribe_path(subscription):
    # Exactly what the send engine puts in List-Unsubscribe (after SITE_URL).
    return reverse("subscribers:unsubscribe", args=[make_token("unsubscribe", subscription.id)])


def test_a_link_scanner_fetching_the_confirmation_link_confirms_nothing(strict_client, news, subscribe):
    pending = subscribe(news, "fan@example.com", status=Subscription.Status.PENDING)
    for _ in range(3):
        response = strict_client.get(confirm_path(pending))
        assert response.status_code == 200
        assert "Yes, subscribe me" in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == "pending" and pending.confirmed_at is None


def test_pressing_the_button_confirms_once_and_owes_the_welcome_email(strict_client, news, subscribe):
    news.welcome_subject, news.welcome_body = "Welcome!", "Thanks for joining.\n\nhttps://example.org/start"
    news.save()
    pending = subscribe(news, "fan@example.com", status=Subscription.Status.PENDING)
    response = strict_client.post(confirm_path(pending))
    assert response.status_code == 200 and "You're in!" in response.content.decode()
    assert not response.cookies
    pending.refresh_from_db()
    assert pending.status == "active" and pending.confirmed_at is not None
    # Pressing again (or a second tab) changes nothing and owes nothing more.
    assert strict_client.post(confirm_path(pending)).status_code == 200
    assert list(OwedEmail.objects.values_list("kind", flat=True)) == ["welcome"]


def test_no_welcome_email_unless_the_creator_wrote_one(strict_client, news, subscribe):
    pending = subscribe(news, "fan@example.com", status=Subscription.Status.PENDING)
    strict_client.post(confirm_path(pending))
    assert not OwedEmail.objects.exists()


def test_a_confirmation_link_does_not_bring_back_someone_who_left(strict_client, news, subscribe):
    gone = subscribe(news, "fan@example.com", status=Subscription.Status.UNSUBSCRIBED)
    response = strict_client.post(confirm_path(gone))
    assert "no longer valid" in response.content.decode()
    gone.refresh_from_db()
    assert gone.status == "unsubscribed"


@pytest.mark.parametrize("view", ["confirm", "unsubscribe", "preferences"])
def test_forged_or_mixed_up_tokens_are_refused(strict_client, news, subscribe, view):
    subscription = subscribe(news, "fan@example.com")
    other_purpose = "preferences" if view != "preferences" else "unsubscribe"
    for token in (
        "garbage",
        make_token(other_purpose, subscription.id),
        make_token(view, subscription.id) + "x",
    ):
        response = strict_client.get(reverse(f"subscribers:{view}", args=[token]))
        assert response.status_code == 404
        assert "This link does not work" in response.content.decode()


def test_get_on_the_unsubscribe_link_shows_a_button_and_changes_nothing(strict_client, news, subscribe):
    active = subscribe(news, "fan@example.com")
    response = strict_client.get(unsubscribe_path(active))
    assert response.status_code == 200
    assert 'method="post"' in response.content.decode()
    active.refresh_from_db()
    assert active.status == "active"


@pytest.mark.parametrize("multipart", [False, True])
def test_one_click_unsubscribe_as_a_mail_provider_posts_it(strict_client, news, subscribe, multipart):
    active = subscribe(news, "fan@example.com")
    if multipart:
        post = lambda: strict_client.post(unsubscribe_path(active), {"List-Unsubscribe": "One-Click"})  # noqa: E731
    else:
        post = lambda: strict_client.post(  # noqa: E731
            unsubscribe_path(active),
            "List-Unsubscribe=One-Click",
            content_type="application/x-www-form-urlencoded",
        )
    first, again = post(), post()
    for response in (first, again):
        assert response.status_code == 200  # never a redirect, and 200 on repeats
        assert not response.cookies
        assert "You are unsubscribed" in response.content.decode()
    active.refresh_from_db()
    assert active.status == "unsubscribed" and active.unsubscribed_at is not None


def test_one_click_for_a_deleted_subscription_still_answers_200(strict_client, news, subscribe):
    active = subscribe(news, "fan@example.com")
    path = unsubscribe_path(active)
    active.delete()
    response = strict_client.post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200


def test_preferences_span_every_newsletter_of_the_installation(strict_client, make_creator, news, subscribe):
    _, other = make_creator("other-news")
    _, unrelated = make_creator("unrelated")
    mine = subscribe(news, "fan@example.com")
    theirs = subscribe(other, "FAN@example.com", status=Subscription.Status.UNSUBSCRIBED)
    subscribe(unrelated, "someone.else@example.com")
    path = reverse("subscribers:preferences", args=[make_token("preferences", mine.id)])

    page = strict_client.get(path).content.decode()
    assert "Zine" in page and "Other-News" in page and "Unrelated" not in page

    left = strict_client.post(path, {"action": "leave", "subscription": mine.id})
    assert left.status_code == 303
    assert "you left that newsletter" in strict_client.get(left["Location"]).content.decode()
    strict_client.post(path, {"action": "rejoin", "subscription": theirs.id})
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == "unsubscribed"
    assert theirs.status == "active" and theirs.consent_form == "preferences"
    assert "Rejoined Other-News" in theirs.consent_text

    # Someone else's subscription id in the form does nothing.
    stranger = Subscription.objects.get(subscriber__email="someone.else@example.com")
    assert strict_client.post(path, {"action": "leave", "subscription": stranger.id}).status_code == 400
    stranger.refresh_from_db()
    assert stranger.status == "active"


def test_a_fan_can_ask_for_their_data_once_an_hour(strict_client, news, subscribe):
    mine = subscribe(news, "fan@example.com")
    path = reverse("subscribers:preferences", args=[make_token("preferences", mine.id)])
    for _ in range(3):
        assert strict_client.post(path, {"action": "export"}).status_code == 303
    assert OwedEmail.objects.filter(kind="data_export").count() == 1


def test_pages_follow_the_newsletter_language_and_preferences_the_browser(client, news, subscribe):
    news.language = "vi"
    news.save()
    pending = subscribe(news, "fan@example.com", status=Subscription.Status.PENDING)
    page = client.get(confirm_path(pending), HTTP_ACCEPT_LANGUAGE="en")
    assert page["Content-Language"] == "vi"
    assert "Vâng, đăng ký cho tôi" in page.content.decode()

    path = reverse("subscribers:preferences", args=[make_token("preferences", pending.id)])
    assert "Các bản tin bạn theo dõi" in client.get(path, HTTP_ACCEPT_LANGUAGE="vi,en;q=0.5").content.decode()
    assert "Your subscriptions" in client.get(path, HTTP_ACCEPT_LANGUAGE="en-US").content.decode()
