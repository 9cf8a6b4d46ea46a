"""One door for the audience's state: every change of a subscription's status or tier leaves an
event with who caused it and the consent of that moment, and no consent record is ever lost."""

import pytest
from django.urls import reverse

from subscribers import services
from subscribers.models import Subscription, SubscriptionEvent
from subscribers.tokens import make_token

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.usefixtures("fresh_rate_limits"),
]

S, K = Subscription.Status, SubscriptionEvent.Kind
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"


@pytest.fixture
def news(make_creator):
    return make_creator("zine")[1]


def sign_up(client, newsletter, email, ip, ref=""):
    response = client.post(f"/{newsletter.slug}/subscribe", {"email": email, "form": "page", "ref": ref},
                           HTTP_USER_AGENT=BROWSER, REMOTE_ADDR=ip)
    assert response.status_code == 200
    return Subscription.objects.get(subscriber__email__iexact=email, newsletter=newsletter)


def history(subscription):
    return list(subscription.events.values_list("kind", "from_status", "to_status", "actor"))


def assert_state_matches_history():
    """Whatever happened, a subscription's status and tier are those its last event left."""
    for subscription in Subscription.objects.all():
        last = subscription.events.last()
        assert last is not None, f"{subscription} changed with no event"
        assert (last.to_status, last.to_tier) == (subscription.status, subscription.tier), history(subscription)


def test_a_fans_whole_journey_is_recorded_and_the_first_consent_survives_a_rejoin(client, news):
    subscription = sign_up(client, news, "fan@example.org", "203.0.113.7", ref="tiktok")
    client.post(reverse("subscribers:confirm", args=[make_token("confirm", subscription.id)]))
    client.post(reverse("subscribers:unsubscribe", args=[make_token("unsubscribe", subscription.id)]),
                {"List-Unsubscribe": "One-Click"})
    sign_up(client, news, "fan@example.org", "198.51.100.9", ref="youtube")
    client.post(reverse("subscribers:confirm", args=[make_token("confirm", subscription.id)]))

    subscription.refresh_from_db()
    assert subscription.status == S.ACTIVE
    assert history(subscription) == [
        (K.SIGNUP, "", S.PENDING, "fan"),
        (K.CONFIRM, S.PENDING, S.ACTIVE, "fan"),
        (K.UNSUBSCRIBE, S.ACTIVE, S.UNSUBSCRIBED, "fan"),
        (K.REJOIN, S.UNSUBSCRIBED, S.PENDING, "fan"),
        (K.CONFIRM, S.PENDING, S.ACTIVE, "fan"),
    ]
    first, _, left, rejoined, _ = subscription.events.all()
    # The first yes is still on record, word for word, after the second replaced it on the row.
    assert (first.consent_ip, first.consent_form, first.detail) == ("203.0.113.7", "page", "tiktok")
    assert "receive emails from Zine" in first.consent_text and first.consent_user_agent == BROWSER
    assert (rejoined.consent_ip, rejoined.detail) == ("198.51.100.9", "youtube")
    assert subscription.consent_ip == "198.51.100.9"
    assert left.detail == "one-click (RFC 8058)"
    assert_state_matches_history()


def test_the_same_address_on_a_second_newsletter_and_a_repeated_signup_are_recorded(client, news, make_creator):
    other = make_creator("other")[1]
    first = sign_up(client, news, "both@example.org", "203.0.113.1")
    second = sign_up(client, other, "both@example.org", "203.0.113.2")  # the slower path: the address exists
    again = sign_up(client, news, "both@example.org", "203.0.113.3")  # still pending: asked again
    assert first.subscriber_id == second.subscriber_id and again.id == first.id
    assert history(second) == [(K.SIGNUP, "", S.PENDING, "fan")]
    assert [e.consent_ip for e in first.events.all()] == ["203.0.113.1", "203.0.113.3"]
    assert_state_matches_history()


def test_repeats_change_nothing_and_record_nothing(client, news):
    subscription = sign_up(client, news, "once@example.org", "203.0.113.7")
    confirm = reverse("subscribers:confirm", args=[make_token("confirm", subscription.id)])
    unsubscribe = reverse("subscribers:unsubscribe", args=[make_token("unsubscribe", subscription.id)])
    for _ in range(3):
        client.post(confirm)
    for _ in range(3):
        client.post(unsubscribe, {"List-Unsubscribe": "One-Click"})
    assert [kind for kind, *_ in history(subscription)] == [K.SIGNUP, K.CONFIRM, K.UNSUBSCRIBE]
    assert_state_matches_history()


def test_the_preference_page_leaves_and_rejoins_through_the_same_door(client, news, make_creator):
    other = make_creator("other")[1]
    subscription = sign_up(client, news, "prefs@example.org", "203.0.113.7")
    client.post(reverse("subscribers:confirm", args=[make_token("confirm", subscription.id)]))
    page = reverse("subscribers:preferences", args=[make_token("preferences", subscription.id)])
    assert client.post(page, {"action": "leave", "subscription": subscription.id}).status_code == 303
    assert client.post(page, {"action": "rejoin", "subscription": subscription.id},
                       REMOTE_ADDR="192.0.2.44").status_code == 303
    kinds = history(subscription)
    assert kinds[-2:] == [(K.UNSUBSCRIBE, S.ACTIVE, S.UNSUBSCRIBED, "fan"), (K.REJOIN, S.UNSUBSCRIBED, S.ACTIVE, "fan")]
    rejoined = subscription.events.last()
    assert rejoined.consent_form == "preferences" and rejoined.consent_ip == "192.0.2.44"
    assert "Rejoined Zine" in rejoined.consent_text
    assert subscription.events.get(kind=K.UNSUBSCRIBE).detail == "preferences page"
    assert not Subscription.objects.filter(newsletter=other).exists()
    assert_state_matches_history()


def test_a_set_of_subscriptions_changes_in_one_go_with_an_event_each(news, subscribe, make_creator):
    user = make_creator("owner")[0]
    subscriptions = [subscribe(news, f"fan{i}@example.org") for i in range(5)]
    subscribe(news, "gone@example.org", status=S.UNSUBSCRIBED)
    queryset = Subscription.objects.filter(newsletter=news)
    assert services.subscriptions_unsubscribe(queryset, actor="creator", actor_user=user, detail="admin") == 5
    assert services.subscriptions_unsubscribe(queryset, actor="creator", actor_user=user) == 0
    for subscription in subscriptions:
        [event] = subscription.events.all()
        assert (event.kind, event.from_status, event.to_status) == (K.UNSUBSCRIBE, S.ACTIVE, S.UNSUBSCRIBED)
        assert (event.actor, event.actor_user, event.detail) == ("creator", user, "admin")


def test_the_fans_data_export_carries_their_history(client, news):
    subscription = sign_up(client, news, "mine@example.org", "203.0.113.7")
    client.post(reverse("subscribers:confirm", args=[make_token("confirm", subscription.id)]))
    data = services.subscriber_data(subscription.subscriber)
    [entry] = data["subscriptions"]
    assert [event["kind"] for event in entry["history"]] == [K.SIGNUP, K.CONFIRM]
    assert entry["history"][0]["consent"]["ip"] == "203.0.113.7"
