"""The REST API at /api/v1/: tokens, a creator's reach, subscribers and issues through the one writer."""

import hashlib
import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from api import schemas, tokens
from api.models import ApiToken
from delivery import engine
from delivery.models import Delivery, OutboxMessage
from newsletters.models import Issue
from subscribers.models import OwedEmail, Subscription, SubscriptionEvent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
API = "/api/v1"


class Api:
    """The Django test client with a token's Authorization header."""

    def __init__(self, client, token):
        self.client, self.headers = client, {"authorization": f"Bearer {token}"} if token else {}

    def __call__(self, method, path, body=None, **query):
        kwargs = {"headers": self.headers}
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type="application/json")
        elif query:
            kwargs["data"] = query
        return getattr(self.client, method)(API + path, **kwargs)


@pytest.fixture
def creator(make_creator, client):
    """A creator (their newsletter ready to send) and the API under their token."""
    user, newsletter = make_creator("zine")
    newsletter.sender_email, newsletter.postal_address = "zine@sender.example", "1 Letter Lane, Hanoi"
    newsletter.save()
    _, plain = tokens.token_create(user=user, name="test")
    return user, newsletter, Api(client, plain)


@pytest.fixture
def other(make_creator, subscribe):
    """Another creator's newsletter with one subscriber and one draft."""
    _user, newsletter = make_creator("other")
    subscription = subscribe(newsletter, "fan@other.example")
    issue = Issue.objects.create(newsletter=newsletter, title="Theirs", slug="theirs", body_markdown="Hi")
    return newsletter, subscription, issue


# --- tokens -----------------------------------------------------------------------------------


def test_only_the_digest_of_a_token_is_stored(make_creator):
    user, _ = make_creator("zine")
    token, plain = tokens.token_create(user=user, name="script")
    start, prefix, secret = plain.split("_", 2)
    assert start == "oa" and prefix == token.prefix and len(secret) >= 40
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert row["digest"] == hashlib.sha256(secret.encode()).hexdigest()
    assert not any(secret in str(value) for value in row.values())
    assert str(token) == f"script (oa_{prefix}_…)"


def test_no_token_a_wrong_one_or_a_revoked_one_is_refused(creator, client):
    user, _, api = creator
    assert api("get", "/newsletters").status_code == 200
    for header in [None, "Bearer", "Bearer nonsense", "Basic abc", "Bearer oa_00000000_nope",
                   "Bearer oa_zzzzzzzz_x", f"Bearer {api.headers['authorization'][7:]}x"]:
        response = client.get(f"{API}/newsletters", headers={"authorization": header} if header else {})
        assert response.status_code == 401, header
        assert response["WWW-Authenticate"].startswith("Bearer") and "token" in response.json()["detail"]
    tokens.tokens_revoke(ApiToken.objects.filter(user=user))
    assert api("get", "/newsletters").status_code == 401


def test_a_token_of_a_deactivated_login_is_refused(creator):
    user, _, api = creator
    user.is_active = False
    user.save()
    assert api("get", "/newsletters").status_code == 401


def test_last_used_is_written_at_most_once_a_minute(creator, django_assert_num_queries):
    user, _, api = creator
    api("get", "/newsletters")
    token = ApiToken.objects.get(user=user)
    first = token.last_used_at
    assert first is not None
    api("get", "/newsletters")
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    api("get", "/newsletters")
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first


# --- newsletters and reach --------------------------------------------------------------------


def test_a_token_lists_its_creators_newsletters_only(creator, other):
    _, newsletter, api = creator
    assert [n["slug"] for n in api("get", "/newsletters").json()] == ["zine"]
    answer = api("get", "/newsletters/zine").json()
    assert answer["name"] == newsletter.name and answer["page_url"].endswith("/zine/")


def test_another_creators_data_answers_404_for_every_verb(creator, other):
    _, _, api = creator
    newsletter, subscription, issue = other
    subscriber = f"/newsletters/other/subscribers/{subscription.pk}"
    calls = [
        ("get", "/newsletters/other", None),
        ("get", "/newsletters/other/subscribers", None),
        ("post", "/newsletters/other/subscribers", {"email": "new@fans.example", "attested": True}),
        ("get", subscriber, None),
        ("patch", subscriber, {"status": "unsubscribed", "tier": "paid", "name": "X"}),
        ("delete", subscriber, None),
        ("get", "/newsletters/other/issues", None),
        ("post", "/newsletters/other/issues", {"title": "Mine now"}),
        ("get", f"/issues/{issue.pk}", None),
        ("patch", f"/issues/{issue.pk}", {"title": "Changed"}),
        ("post", f"/issues/{issue.pk}/schedule", {"at": "2031-01-01T00:00:00Z"}),
        ("post", f"/issues/{issue.pk}/send", None),
        ("get", f"/issues/{issue.pk}/stats", None),
        # The creator's own newsletter with the other's subscription id: not theirs either.
        ("get", f"/newsletters/zine/subscribers/{subscription.pk}", None),
        ("patch", f"/newsletters/zine/subscribers/{subscription.pk}", {"status": "unsubscribed"}),
        ("delete", f"/newsletters/zine/subscribers/{subscription.pk}", None),
    ]
    for method, path, body in calls:
        response = api(method, path, body)
        assert response.status_code == 404, (method, path, response.content)
        assert response.json() == {"detail": "Not found."}
    subscription.refresh_from_db()
    issue.refresh_from_db()
    assert (subscription.status, subscription.tier, subscription.subscriber.name) == ("active", "free", "")
    assert (issue.title, issue.status) == ("Theirs", "draft")
    assert Subscription.objects.filter(newsletter=newsletter).count() == 1
    assert Issue.objects.filter(newsletter=newsletter).count() == 1
    assert not SubscriptionEvent.objects.filter(subscription=subscription).exists()


def test_a_superusers_token_reaches_every_newsletter(creator, other, django_user_model, client):
    root = django_user_model.objects.create_superuser("root", "root@example.org", "pw")
    _, plain = tokens.token_create(user=root, name="ops")
    api = Api(client, plain)
    assert sorted(n["slug"] for n in api("get", "/newsletters").json()) == ["other", "zine"]
    assert api("get", f"/issues/{other[2].pk}").status_code == 200


# --- subscribers ------------------------------------------------------------------------------


def test_an_invitation_is_pending_and_owes_a_confirmation(creator):
    user, _newsletter, api = creator
    response = api("post", "/newsletters/zine/subscribers", {"email": "Jane@Fans.example", "name": "Jane"})
    assert response.status_code == 201, response.content
    body = response.json()
    expected = ("Jane@fans.example", "Jane", "pending", "api")  # the domain spelled as the signup form does
    assert (body["email"], body["name"], body["status"], body["source"]) == expected
    subscription = Subscription.objects.get(pk=body["id"])
    assert OwedEmail.objects.filter(subscription=subscription, kind=OwedEmail.Kind.CONFIRMATION).count() == 1
    event = subscription.events.get()
    assert (event.kind, event.actor_user, event.to_status) == ("invite", user, "pending")


def test_an_attested_address_is_active_and_recorded_as_an_import(creator):
    user, _, api = creator
    body = api("post", "/newsletters/zine/subscribers",
               {"email": "old@fans.example", "attested": True, "source": "substack"}).json()
    assert (body["status"], body["source"]) == ("active", "substack") and body["confirmed_at"]
    subscription = Subscription.objects.get(pk=body["id"])
    assert not OwedEmail.objects.filter(subscription=subscription).exists()
    event = subscription.events.get()
    assert (event.kind, event.actor_user, event.consent_form) == ("import", user, "attested")
    assert user.get_username() in subscription.consent_text


def test_a_duplicate_answers_409_with_the_existing_subscription(creator):
    _, _, api = creator
    first = api("post", "/newsletters/zine/subscribers", {"email": "jane@fans.example"}).json()
    again = api("post", "/newsletters/zine/subscribers", {"email": "JANE@fans.example", "attested": True})
    assert again.status_code == 409 and again.json()["id"] == first["id"]
    assert Subscription.objects.get(pk=first["id"]).status == "pending"


def test_a_bad_address_answers_422_with_the_reason(creator):
    _, newsletter, api = creator
    newsletter.blocked_domains = "spam.example"
    newsletter.save()
    for email, words in [("not-an-address", "valid email"), ("a@b@c", "valid email"), ("x@spam.example", "spam.example"),
                         ("", "Enter your email")]:
        response = api("post", "/newsletters/zine/subscribers", {"email": email})
        assert response.status_code == 422 and words in response.json()["detail"], (email, response.json())
    response = api("post", "/newsletters/zine/subscribers", {"name": "no address"})
    assert response.status_code == 422 and "email" in response.json()["detail"]
    assert not Subscription.objects.exists()


def test_subscribers_are_listed_filtered_and_paged(creator, subscribe):
    _, newsletter, api = creator
    for i in range(5):
        subscribe(newsletter, f"fan{i}@fans.example")
    subscribe(newsletter, "gone@fans.example", status=Subscription.Status.UNSUBSCRIBED)
    subscribe(newsletter, "payer@other.example", tier=Subscription.Tier.PAID)
    page = api("get", "/newsletters/zine/subscribers", limit=3).json()
    assert page["count"] == 7 and len(page["items"]) == 3
    rest = api("get", "/newsletters/zine/subscribers", limit=3, offset=3).json()["items"]
    assert len(rest) == 3 and not {s["id"] for s in rest} & {s["id"] for s in page["items"]}
    assert page["items"][0]["email"] == "fan0@fans.example"
    assert set(page["items"][0]) == {"id", "email", "name", "status", "tier", "source", "created_at",
                                     "confirmed_at", "unsubscribed_at"}

    def emails(**query):
        return [s["email"] for s in api("get", "/newsletters/zine/subscribers", **query).json()["items"]]

    assert emails(status="unsubscribed") == ["gone@fans.example"]
    assert emails(tier="paid") == ["payer@other.example"]
    assert emails(email="OTHER.") == ["payer@other.example"]
    Subscription.objects.filter(subscriber__email="fan0@fans.example").update(
        created_at=timezone.now() - timedelta(days=10)
    )
    week_ago = (timezone.now() - timedelta(days=7)).isoformat()
    assert emails(created_before=week_ago) == ["fan0@fans.example"]
    assert "fan0@fans.example" not in emails(created_after=week_ago)
    assert api("get", f"/newsletters/zine/subscribers/{page['items'][1]['id']}").json()["email"] == "fan1@fans.example"
    assert api("get", "/newsletters/zine/subscribers", status="gone").status_code == 422
    assert api("get", "/newsletters/zine/subscribers", limit=0).status_code == 422


def test_unsubscribing_through_the_api_is_recorded_as_the_apis(creator, subscribe):
    user, newsletter, api = creator
    subscription = subscribe(newsletter, "fan@fans.example")
    response = api("patch", f"/newsletters/zine/subscribers/{subscription.pk}", {"status": "unsubscribed"})
    assert response.status_code == 200 and response.json()["status"] == "unsubscribed"
    assert response.json()["unsubscribed_at"]
    event = subscription.events.get()
    assert (event.kind, event.actor, event.actor_user, event.to_status) == ("unsubscribe", "api", user, "unsubscribed")
    api("patch", f"/newsletters/zine/subscribers/{subscription.pk}", {"status": "unsubscribed"})
    assert subscription.events.count() == 1  # a repeat changes nothing


def test_the_api_never_makes_anyone_active(creator, subscribe):
    _, newsletter, api = creator
    subscription = subscribe(newsletter, "fan@fans.example", status=Subscription.Status.PENDING)
    for status in ["active", "pending", "bounced"]:
        response = api("patch", f"/newsletters/zine/subscribers/{subscription.pk}", {"status": status})
        assert response.status_code == 422 and "never make them active" in response.json()["detail"]
    subscription.refresh_from_db()
    assert subscription.status == "pending" and not subscription.events.exists()


def test_the_tier_changes_through_the_one_writer(creator, subscribe):
    _user, newsletter, api = creator
    subscription = subscribe(newsletter, "fan@fans.example")
    body = api("patch", f"/newsletters/zine/subscribers/{subscription.pk}", {"tier": "comped"}).json()
    assert body["tier"] == "comped"
    event = subscription.events.get()
    assert (event.kind, event.actor, event.from_tier, event.to_tier) == ("tier", "api", "free", "comped")
    assert api("patch", f"/newsletters/zine/subscribers/{subscription.pk}", {"tier": "gold"}).status_code == 422
    # The comp is billing's: a membership row; paid comes from Stripe only; free ends the comp.
    assert subscription.membership.source == "comp"
    refused = api("patch", f"/newsletters/zine/subscribers/{subscription.pk}", {"tier": "paid"})
    assert refused.status_code == 422 and "Stripe" in refused.json()["detail"]
    body = api("patch", f"/newsletters/zine/subscribers/{subscription.pk}", {"tier": "free"}).json()
    assert body["tier"] == "free" and subscription.events.count() == 2


def test_a_name_shared_with_another_creators_list_is_not_theirs_to_change(creator, other, subscribe):
    _, newsletter, api = creator
    mine = subscribe(newsletter, "solo@fans.example")
    body = api("patch", f"/newsletters/zine/subscribers/{mine.pk}", {"name": "Solo"}).json()
    assert body["name"] == "Solo"
    shared = subscribe(newsletter, "fan@other.example")  # also on the other creator's list
    response = api("patch", f"/newsletters/zine/subscribers/{shared.pk}", {"name": "Mine", "tier": "paid"})
    assert response.status_code == 409 and "another creator" in response.json()["detail"]
    shared.refresh_from_db()
    assert shared.subscriber.name == "" and shared.tier == "free"  # nothing of the call happened


def test_delete_erases_the_person_from_this_newsletter(creator, subscribe):
    pytest.importorskip("subscribers.erasure")
    _, newsletter, api = creator
    subscription = subscribe(newsletter, "leave@fans.example")
    response = api("delete", f"/newsletters/zine/subscribers/{subscription.pk}")
    assert response.status_code == 204, response.content
    assert not Subscription.objects.filter(pk=subscription.pk).exists()
    assert api("get", f"/newsletters/zine/subscribers/{subscription.pk}").status_code == 404
    for attested in (True, False):  # only the person may come back, by signing up
        again = api("post", "/newsletters/zine/subscribers", {"email": "leave@fans.example", "attested": attested})
        assert again.status_code == 409 and "forgotten" in again.json()["detail"]


# --- issues -----------------------------------------------------------------------------------


def test_an_issue_is_drafted_edited_sent_and_counted(creator, subscribe, monkeypatch, transport_settings):
    monkeypatch.setattr(engine.chains, "kick", lambda *args, **kwargs: None)
    transport_settings("outbox://")
    _, newsletter, api = creator
    for i in range(3):
        subscribe(newsletter, f"fan{i}@fans.example")
    created = api("post", "/newsletters/zine/issues", {"title": "Hello, fans", "body": "First **words**."})
    assert created.status_code == 201, created.content
    issue = created.json()
    assert (issue["slug"], issue["status"], issue["audience"]) == ("hello-fans", "draft", "everyone")
    assert issue["web_url"].endswith("/zine/issues/hello-fans/")
    again = api("post", "/newsletters/zine/issues", {"title": "Hello, fans"}).json()
    assert again["slug"] == "hello-fans-2"
    assert api("post", "/newsletters/zine/issues", {"title": "X", "slug": "hello-fans"}).status_code == 409

    changed = api("patch", f"/issues/{issue['id']}", {"body": "Hello {{ name }}, this week: *things*."}).json()
    assert changed["body"].startswith("Hello {{ name }}") and changed["title"] == "Hello, fans"
    listed = api("get", "/newsletters/zine/issues").json()
    assert listed["count"] == 2 and {i["id"] for i in listed["items"]} == {issue["id"], again["id"]}

    before = api("get", f"/issues/{issue['id']}/stats").json()
    assert (before["recipients"], before["audience"], before["deliveries"]["sent"]) == (0, 3, 0)
    sent = api("post", f"/issues/{issue['id']}/send")
    assert sent.status_code == 202, sent.content
    assert sent.json() == {"id": issue["id"], "status": "sending", "recipients": 3}
    for _ in range(10):
        if engine.send_next_batch(issue["id"], "w1")[0] != "again":
            break
    stats = api("get", f"/issues/{issue['id']}/stats").json()
    assert stats["status"] == "sent" and stats["recipients"] == 3 and stats["deliveries"]["sent"] == 3
    assert OutboxMessage.objects.filter(subject="Hello, fans").count() == 3

    assert api("post", f"/issues/{issue['id']}/send").status_code == 409
    refused = api("patch", f"/issues/{issue['id']}", {"title": "Rewritten"})
    assert refused.status_code == 409 and "already sent" in refused.json()["detail"]
    assert api("patch", f"/issues/{issue['id']}", {"show_on_web": False}).json()["show_on_web"] is False
    assert Delivery.objects.filter(issue_id=issue["id"]).count() == 3


def test_an_issue_that_cannot_go_out_says_why(creator, monkeypatch):
    monkeypatch.setattr(engine.chains, "kick", lambda *args, **kwargs: None)
    _, newsletter, api = creator
    newsletter.postal_address = ""
    newsletter.save()
    issue = api("post", "/newsletters/zine/issues", {"title": "Soon", "body": "<script>x</script>"}).json()
    for path, body in [("send", None), ("schedule", {"at": "2031-01-01T09:00:00+07:00"})]:
        response = api("post", f"/issues/{issue['id']}/{path}", body)
        assert response.status_code == 422, response.content
        problems = response.json()["problems"]
        assert any("postal address" in p for p in problems) and any("script" in p for p in problems)
    assert Issue.objects.get(pk=issue["id"]).status == "draft"


def test_an_issue_is_scheduled_for_a_time_to_come(creator):
    _, _, api = creator
    issue = api("post", "/newsletters/zine/issues", {"title": "Later", "body": "Hi", "audience": "paid"}).json()
    assert api("post", f"/issues/{issue['id']}/schedule", {"at": "2001-01-01T00:00:00Z"}).status_code == 422
    assert api("post", f"/issues/{issue['id']}/schedule", {"at": "soon"}).status_code == 422
    body = api("post", f"/issues/{issue['id']}/schedule", {"at": "2031-01-01T09:00:00+07:00"}).json()
    assert (body["status"], body["scheduled_at"], body["audience"]) == ("scheduled", "2031-01-01T02:00:00Z", "paid")
    assert api("patch", f"/issues/{issue['id']}", {"title": "Later still"}).json()["title"] == "Later still"


def test_issue_fields_are_checked_like_the_admins(creator):
    _, _, api = creator
    for body in [{"title": ""}, {"title": "Two\nlines"}, {"title": "x" * 301}, {"title": "T", "slug": "no spaces"},
                 {"title": "T", "audience": "friends"}, {"title": "T", "body": "nul\x00"}, {}, []]:
        response = api("post", "/newsletters/zine/issues", body)
        assert response.status_code == 422 and response.json()["detail"], (body, response.content)
    bad_json = api.client.post(f"{API}/newsletters/zine/issues", data="{", content_type="application/json",
                               headers=api.headers)
    assert bad_json.status_code == 400 and bad_json.json()["detail"]
    assert not Issue.objects.exists()


# --- the schema and the admin -----------------------------------------------------------------


def test_the_schema_is_served_and_the_docs_page_is_not(client):
    schema = client.get(reverse("api:openapi-json")).json()
    assert schema["openapi"].startswith("3.1") and f"{API}/newsletters/{{slug}}/subscribers" in schema["paths"]
    assert schema["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"
    assert client.get(f"{API}/docs").status_code == 404  # Swagger UI would come from a CDN: the CSP forbids it


def test_delivery_counts_name_every_delivery_status():
    assert set(schemas.DeliveryCounts.model_fields) == set(Delivery.Status.values)


def test_the_admin_shows_a_new_token_once(creator, client, make_creator):
    user, _, _ = creator
    client.force_login(user)
    response = client.post(reverse("admin:api_apitoken_add"), {"name": "Zapier"})
    assert response.status_code == 200
    page = response.content.decode()
    token = ApiToken.objects.get(name="Zapier")
    assert token.user == user and "shown only this once" in page
    plain = next(word for word in page.replace('"', " ").split() if word.startswith(f"oa_{token.prefix}_"))
    assert tokens.token_authenticate(plain) == token
    assert "no-store" in response["Cache-Control"]
    for url in [reverse("admin:api_apitoken_changelist"), reverse("admin:api_apitoken_change", args=[token.pk])]:
        later = client.get(url).content.decode()
        assert f"oa_{token.prefix}_" in later and plain not in later

    intruder, _ = make_creator("intruder")
    client.force_login(intruder)
    assert client.get(reverse("admin:api_apitoken_change", args=[token.pk])).status_code == 404
    assert "Zapier" not in client.get(reverse("admin:api_apitoken_changelist")).content.decode()
    client.post(reverse("admin:api_apitoken_changelist"), {"action": "revoke", "_selected_action": [token.pk]})
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None

    client.force_login(user)
    client.post(reverse("admin:api_apitoken_changelist"), {"action": "revoke", "_selected_action": [token.pk]})
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert tokens.token_authenticate(plain) is None
