"""A creator's hands on their list go through the one door: an address added by hand is invited
(or active on the creator's declaration), a status or a tier is never typed, and every change
is in the subscription's history."""

import pytest
from django.urls import reverse

from subscribers.models import OwedEmail, Subscription, SubscriptionEvent

pytestmark = pytest.mark.django_db
S, K = Subscription.Status, SubscriptionEvent.Kind


@pytest.fixture
def creator(make_creator, client):
    user, newsletter = make_creator("zine")
    client.force_login(user)
    return user, newsletter


def add(client, newsletter, email, **extra):
    return client.post(reverse("admin:subscribers_subscription_add"),
                       {"email": email, "newsletter": newsletter.pk, "source": "market stall", **extra})


def test_an_address_added_by_hand_is_invited_not_made_active(client, creator):
    user, newsletter = creator
    # A hostile or careless post with a status and a tier in it changes nothing.
    response = add(client, newsletter, "stranger@example.org", status="active", tier="paid")
    assert response.status_code == 302
    subscription = Subscription.objects.get(subscriber__email="stranger@example.org")
    assert (subscription.status, subscription.tier, subscription.source) == (S.PENDING, "free", "market stall")
    assert OwedEmail.objects.get(subscription=subscription).kind == OwedEmail.Kind.CONFIRMATION
    [event] = subscription.events.all()
    assert (event.kind, event.to_status, event.actor, event.actor_user) == (K.INVITE, S.PENDING, "creator", user)
    assert event.consent_at is None  # an invitation is not consent; confirming is


def test_with_the_creators_declaration_the_address_is_active_and_the_declaration_is_kept(client, creator):
    user, newsletter = creator
    assert add(client, newsletter, "old.fan@example.org", attested="on").status_code == 302
    subscription = Subscription.objects.get(subscriber__email="old.fan@example.org")
    assert subscription.status == S.ACTIVE and subscription.confirmed_at is not None
    assert not OwedEmail.objects.filter(subscription=subscription).exists()
    [event] = subscription.events.all()
    assert (event.kind, event.actor_user, event.consent_form) == (K.IMPORT, user, "attested")
    assert user.get_username() in event.consent_text and "opted in to Zine" in event.consent_text
    assert subscription.consent_text == event.consent_text


def test_the_add_form_offers_no_status_or_tier(client, creator):
    page = client.get(reverse("admin:subscribers_subscription_add")).content.decode()
    assert 'name="email"' in page and 'name="attested"' in page
    assert 'name="status"' not in page and 'name="tier"' not in page


def test_the_change_form_cannot_set_a_status_or_a_tier_and_shows_the_history(client, creator, subscribe):
    _, newsletter = creator
    subscription = subscribe(newsletter, "pending@example.org", status=S.PENDING)
    url = reverse("admin:subscribers_subscription_change", args=[subscription.pk])
    page = client.get(url).content.decode()
    assert 'name="status"' not in page and 'name="tier"' not in page
    client.post(url, {"source": "edited", "status": "active", "tier": "paid",
                      "events-TOTAL_FORMS": "0", "events-INITIAL_FORMS": "0"})
    subscription.refresh_from_db()
    assert (subscription.status, subscription.tier) == (S.PENDING, "free")
    add(client, newsletter, "hist@example.org")
    invited = Subscription.objects.get(subscriber__email="hist@example.org")
    page = client.get(reverse("admin:subscribers_subscription_change", args=[invited.pk])).content.decode()
    assert "added by hand" in page
    assert "Invited by the creator" in page


def test_the_unsubscribe_action_is_recorded_with_who_did_it(client, creator, subscribe):
    user, newsletter = creator
    subscriptions = [subscribe(newsletter, f"fan{i}@example.org") for i in range(3)]
    response = client.post(reverse("admin:subscribers_subscription_changelist"), {
        "action": "unsubscribe_selected", "_selected_action": [s.pk for s in subscriptions[:2]],
    })
    assert response.status_code == 302
    for subscription in subscriptions[:2]:
        subscription.refresh_from_db()
        assert subscription.status == S.UNSUBSCRIBED
        [event] = subscription.events.all()
        assert (event.kind, event.actor, event.actor_user, event.detail) == (K.UNSUBSCRIBE, "creator", user,
                                                                            "admin action")
    assert not subscriptions[2].events.exists()
