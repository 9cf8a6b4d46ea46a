"""Two creators on one installation: each sees and changes only their own newsletters."""

import pytest
from django.urls import reverse

from delivery.models import Delivery
from newsletters.models import Issue, Newsletter
from subscribers.models import Subscriber, Subscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_creators(make_creator, subscribe, client):
    alice, alice_news = make_creator("alice-news", "alice@example.com")
    bob, bob_news = make_creator("bob-news", "bob@example.com")
    data = {
        "alice": alice,
        "bob": bob,
        "alice_news": alice_news,
        "bob_news": bob_news,
        "alice_sub": subscribe(alice_news, "ann.fan@example.com"),
        "bob_sub": subscribe(bob_news, "bert.fan@example.com"),
        "alice_issue": Issue.objects.create(newsletter=alice_news, title="Alice's first", slug="a1"),
        "bob_issue": Issue.objects.create(newsletter=bob_news, title="Bob's secret plans", slug="b1"),
    }
    data["bob_delivery"] = Delivery.objects.create(
        issue=data["bob_issue"], subscriber=data["bob_sub"].subscriber
    )
    client.force_login(alice)
    return data


def admin_url(obj, view="change"):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_{view}", args=[obj.pk])


def changelist(model):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def test_creator_logs_in_with_the_printed_password(client, make_creator):
    user, _ = make_creator("carol", "carol@example.com")
    response = client.post(
        reverse("admin:login"),
        {"username": "carol@example.com", "password": user.plain_password, "next": "/admin/"},
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize(
    "model, mine, theirs",
    [
        (Newsletter, "Alice-News", "Bob-News"),
        (Subscription, "ann.fan@example.com", "bert.fan@example.com"),
        (Subscriber, "ann.fan@example.com", "bert.fan@example.com"),
        (Issue, "Alice&#x27;s first", "Bob&#x27;s secret plans"),
    ],
)
def test_lists_show_only_the_creators_own_objects(client, two_creators, model, mine, theirs):
    page = client.get(changelist(model)).content.decode()
    assert mine in page
    assert theirs not in page


def test_deliveries_of_another_creator_are_not_listed(client, two_creators):
    page = client.get(changelist(Delivery)).content.decode()
    assert "bert.fan@example.com" not in page


@pytest.mark.parametrize("key", ["bob_news", "bob_sub", "bob_issue", "bob_delivery"])
def test_direct_urls_to_another_creators_objects_answer_404(client, two_creators, key):
    obj = two_creators[key]
    assert client.get(admin_url(obj)).status_code == 404
    assert client.get(admin_url(obj, "history")).status_code == 404


@pytest.mark.parametrize("key", ["bob_sub", "bob_issue"])
def test_another_creators_objects_cannot_be_deleted_or_changed(client, two_creators, key):
    obj = two_creators[key]
    assert client.post(admin_url(obj, "delete"), {"post": "yes"}).status_code == 404
    assert client.post(admin_url(obj), {"title": "defaced", "status": "unsubscribed"}).status_code == 404
    obj.refresh_from_db()
    assert type(obj).objects.filter(pk=obj.pk).exists()
    assert getattr(obj, "title", "") != "defaced"
    assert getattr(obj, "status", "") != "unsubscribed"


def test_own_objects_open(client, two_creators):
    for key in ["alice_news", "alice_sub", "alice_issue"]:
        assert client.get(admin_url(two_creators[key])).status_code == 200


def test_action_on_forged_ids_leaves_another_creators_subscription_alone(client, two_creators):
    mine, theirs = two_creators["alice_sub"], two_creators["bob_sub"]
    response = client.post(
        changelist(Subscription),
        {"action": "unsubscribe_selected", "_selected_action": [mine.pk, theirs.pk]},
    )
    assert response.status_code == 302
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == Subscription.Status.UNSUBSCRIBED
    assert theirs.status == Subscription.Status.ACTIVE


def test_bulk_delete_action_cannot_reach_another_creators_issue(client, two_creators):
    response = client.post(
        changelist(Issue),
        {"action": "delete_selected", "_selected_action": [two_creators["bob_issue"].pk], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert Issue.objects.filter(pk=two_creators["bob_issue"].pk).exists()


def test_issue_cannot_be_filed_under_another_creators_newsletter(client, two_creators):
    response = client.post(
        reverse("admin:newsletters_issue_add"),
        {"newsletter": two_creators["bob_news"].pk, "title": "Sneaky", "slug": "sneaky",
         "body_markdown": "x", "audience": "everyone", "show_on_web": "on"},
    )
    assert response.status_code == 200  # the form comes back with an error
    assert "Select a valid choice" in response.content.decode()
    assert not Issue.objects.filter(slug="sneaky").exists()


def test_creator_adds_a_subscriber_by_address_to_their_own_list(client, two_creators):
    response = client.post(
        reverse("admin:subscribers_subscription_add"),
        {"email": "New.Fan@Example.com", "name": "New Fan", "newsletter": two_creators["alice_news"].pk,
         "status": "active", "tier": "free", "source": "manual"},
    )
    assert response.status_code == 302
    subscription = Subscription.objects.get(subscriber__email__iexact="new.fan@example.com")
    assert subscription.newsletter == two_creators["alice_news"]


def test_adding_an_address_already_on_the_list_says_so(client, two_creators):
    response = client.post(
        reverse("admin:subscribers_subscription_add"),
        {"email": "ANN.FAN@example.com", "newsletter": two_creators["alice_news"].pk,
         "status": "active", "tier": "free"},
    )
    assert response.status_code == 200
    assert "already on the list" in response.content.decode()
    assert Subscription.objects.filter(newsletter=two_creators["alice_news"]).count() == 1


def test_a_shared_subscriber_shows_only_the_creators_own_subscription(client, two_creators, subscribe):
    shared = subscribe(two_creators["bob_news"], "ann.fan@example.com")  # Ann follows Bob too
    page = client.get(admin_url(two_creators["alice_sub"].subscriber)).content.decode()
    assert "Alice-News" in page
    assert "Bob-News" not in page
    assert shared.subscriber_id == two_creators["alice_sub"].subscriber_id


def test_creator_cannot_hand_their_newsletter_to_others(client, two_creators):
    newsletter = two_creators["alice_news"]
    client.post(
        admin_url(newsletter),
        {"name": "Alice-News", "slug": "alice-news", "language": "en", "owners": [two_creators["bob"].pk],
         "social_links-TOTAL_FORMS": 0, "social_links-INITIAL_FORMS": 0},
    )
    assert list(newsletter.owners.all()) == [two_creators["alice"]]


def test_superuser_sees_everything(client, two_creators, django_user_model):
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    page = client.get(changelist(Issue)).content.decode()
    assert "Alice&#x27;s first" in page and "Bob&#x27;s secret plans" in page


def test_the_suppression_list_is_for_superusers_only(client, two_creators, django_user_model):
    url = reverse("admin:subscribers_suppression_changelist")
    assert client.get(url).status_code == 403
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    response = client.post(reverse("admin:subscribers_suppression_add"),
                           {"email": "complainer@example.com", "reason": "complaint"})
    assert response.status_code == 302
    assert "complainer@example.com" in client.get(url).content.decode()
