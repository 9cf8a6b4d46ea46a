"""Paid memberships: plans made in Stripe from the admin, Checkout, verified webhooks, comps, MRR.

Every call to Stripe goes through the stripe library's own HTTP client to the loopback stand-in
(tests/stripe_standin.py), which keeps each account's objects apart and records the parameters.
Webhooks are signed in the test with the stripe library's own signature helper.
"""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from billing import selectors, services
from billing.crypto import decrypt
from billing.models import BillingSettings, Membership, Plan, RefundPolicy, StripeEvent
from subscribers.models import OwedEmail, Subscription, SubscriptionEvent

from .stripe_standin import StripeStandIn, signed

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

S, T, K = Subscription.Status, Subscription.Tier, SubscriptionEvent.Kind
KEY, SECRET = "sk_test_installation", "whsec_installation"
WEBHOOK = "/billing/stripe/webhook/"


@pytest.fixture(autouse=True)
def _own_rate_limits(fresh_rate_limits):
    """Joins count against the signup limits: each test starts with none spent."""


@pytest.fixture
def stripe_api(settings):
    standin = StripeStandIn().start()
    settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = KEY, SECRET
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_installation"
    settings.STRIPE_API_BASE = standin.url
    yield standin
    standin.stop()


@pytest.fixture
def zine(make_creator, stripe_api):
    user, newsletter = make_creator("zine")
    plan = services.plan_create(newsletter=newsletter, name="Monthly", interval="month", amount=500, currency="usd")
    return user, newsletter, plan


def post_event(client, event_type, obj, *, secret=SECRET, url=WEBHOOK, **kwargs):
    body, header = signed(event_type, obj, secret, **kwargs)
    return client.post(url, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)


def paid_member(stripe_api, plan, subscription, *, status="active", key=KEY):
    """A Stripe subscription in the stand-in for our subscription, as a completed checkout leaves it."""
    return stripe_api.subscription(key, status=status, price=plan.stripe_price_id,
                                   metadata={"ownedaudience_subscription": str(subscription.pk)})


def test_a_plan_made_in_the_admin_is_a_product_and_a_monthly_price_in_stripe(stripe_api, make_creator, client):
    user, newsletter = make_creator("zine")
    client.force_login(user)
    response = client.post("/admin/billing/plan/add/", {
        "newsletter": newsletter.pk, "name": "Supporter", "interval": "year", "price": "48.50", "currency": "EUR",
        "trial_days": "7", "position": "0",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    plan = Plan.objects.get(newsletter=newsletter)
    assert (plan.amount, plan.currency, plan.interval, plan.trial_days) == (4850, "eur", "year", 7)
    price = stripe_api.calls("POST", "/v1/prices")[0]
    assert price["key"] == KEY
    assert price["params"]["unit_amount"] == "4850" and price["params"]["recurring"] == {"interval": "year"}
    assert price["params"]["product"] == plan.stripe_product_id and plan.stripe_price_id.startswith("price_")
    # An existing price, linked by its id: amount and interval are read from Stripe.
    existing = stripe_api.put(KEY, {"id": "price_existing", "object": "price", "active": True, "unit_amount": 5000000,
                                    "currency": "vnd", "product": "prod_old", "nickname": "Tháng",
                                    "recurring": {"interval": "month", "interval_count": 1}})
    response = client.post("/admin/billing/plan/add/", {
        "newsletter": newsletter.pk, "name": "", "interval": "month", "currency": "usd",
        "existing_price_id": existing["id"], "trial_days": "0", "position": "1",
    })
    assert response.status_code == 302
    linked = Plan.objects.get(stripe_price_id="price_existing")
    assert (linked.amount, linked.currency, linked.name, linked.display_amount) == (5000000, "vnd", "Tháng",
                                                                                    "5.000.000 ₫")
    # A price id Stripe does not know is a form error, and no plan.
    response = client.post("/admin/billing/plan/add/", {
        "newsletter": newsletter.pk, "name": "x", "interval": "month", "currency": "usd",
        "existing_price_id": "price_nope", "trial_days": "0", "position": "0",
    })
    assert response.status_code == 200 and "Stripe said" in response.content.decode()
    assert Plan.objects.count() == 2


def test_checkout_sends_the_fan_to_stripe_with_their_subscription_and_paying_makes_them_a_paid_subscriber(
    zine, stripe_api, client,
):
    _user, newsletter, plan = zine
    plan.trial_days = 14
    plan.save()
    BillingSettings.objects.create(newsletter=newsletter, allow_promotion_codes=True)
    page = client.get("/zine/").content.decode()
    assert 'id="plans"' in page and "$5.00" in page
    response = client.post("/zine/join", {"plan": plan.pk, "email": "Fan@Example.org"})
    assert response.status_code == 303
    session_call = stripe_api.calls("POST", "/v1/checkout/sessions")[-1]
    session = stripe_api.get(response["Location"].rsplit("/", 1)[1])
    subscription = Subscription.objects.get(subscriber__email="Fan@example.org", newsletter=newsletter)
    params = session_call["params"]
    assert params["mode"] == "subscription" and params["line_items"] == [{"price": plan.stripe_price_id,
                                                                          "quantity": "1"}]
    assert params["client_reference_id"] == str(subscription.pk) and params["customer_email"] == "Fan@example.org"
    assert params["subscription_data"]["trial_period_days"] == "14"
    assert params["subscription_data"]["metadata"]["ownedaudience_subscription"] == str(subscription.pk)
    assert params["allow_promotion_codes"] == "true"
    assert params["success_url"].endswith("/zine/joined")
    assert params["cancel_url"].endswith("/zine/?checkout=canceled#plans")
    assert "No payment was made" in client.get("/zine/?checkout=canceled").content.decode()
    # Not subscribed before: pending, and no confirmation email (paying will be the consent).
    assert subscription.status == S.PENDING and not OwedEmail.objects.filter(subscription=subscription).exists()

    completed, remote = stripe_api.complete_checkout(session["id"])
    assert post_event(client, "checkout.session.completed", completed).status_code == 200
    subscription.refresh_from_db()
    assert (subscription.status, subscription.tier) == (S.ACTIVE, T.PAID)
    event = subscription.events.order_by("at", "id").last()
    assert (event.kind, event.actor, event.to_tier) == (K.CONFIRM, "stripe", T.PAID)
    assert session["id"] in event.detail and session["id"] in event.consent_text
    membership = Membership.objects.get(subscription=subscription)
    assert (membership.status, membership.plan, membership.stripe_subscription_id) == ("trialing", plan, remote["id"])
    assert membership.current_period_end is not None
    assert selectors.revenue(newsletter.pk) == {"members": 1, "trialing": 1, "comped": 0, "mrr": {}}
    assert "Thank you for becoming a member" in client.get("/zine/joined").content.decode()


def test_bad_signatures_get_400_and_change_nothing(zine, stripe_api, subscribe, client):
    _, newsletter, plan = zine
    subscription = subscribe(newsletter, "fan@example.org")
    remote = paid_member(stripe_api, plan, subscription)
    body, _ = signed("customer.subscription.updated", remote, SECRET)
    assert client.post(WEBHOOK, body, content_type="application/json").status_code == 400  # unsigned
    assert post_event(client, "customer.subscription.updated", remote, secret="whsec_wrong").status_code == 400
    stale = int(time.time()) - 3600
    assert post_event(client, "customer.subscription.updated", remote, timestamp=stale).status_code == 400
    assert client.get(WEBHOOK).status_code == 405
    subscription.refresh_from_db()
    assert subscription.tier == T.FREE and not StripeEvent.objects.exists() and not Membership.objects.exists()
    assert stripe_api.calls("GET", "/v1/subscriptions") == []


def test_a_replayed_event_is_a_2xx_that_changes_nothing(zine, stripe_api, subscribe, client):
    _, newsletter, plan = zine
    subscription = subscribe(newsletter, "fan@example.org")
    remote = paid_member(stripe_api, plan, subscription)
    body, header = signed("customer.subscription.created", remote, SECRET, event_id="evt_once")
    for _ in range(3):
        assert client.post(WEBHOOK, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header).status_code == 200
    subscription.refresh_from_db()
    assert subscription.tier == T.PAID
    assert StripeEvent.objects.filter(event_id="evt_once").count() == 1
    assert subscription.events.filter(kind=K.TIER).count() == 1
    assert len(stripe_api.calls("GET", "/v1/subscriptions")) == 1  # applied once, then only acknowledged


def test_deleted_before_updated_still_ends_in_the_right_state(zine, stripe_api, subscribe, client):
    _, newsletter, plan = zine
    subscription = subscribe(newsletter, "fan@example.org")
    remote = paid_member(stripe_api, plan, subscription)
    assert post_event(client, "customer.subscription.created", remote).status_code == 200
    stale_copy = dict(remote)  # what the "updated" event carried when it was made: still active
    remote.update(status="canceled", ended_at=int(time.time()))
    assert post_event(client, "customer.subscription.deleted", remote).status_code == 200
    assert post_event(client, "customer.subscription.updated", stale_copy).status_code == 200  # arrives late
    subscription.refresh_from_db()
    membership = Membership.objects.get(subscription=subscription)
    assert subscription.tier == T.FREE and membership.status == "canceled" and not membership.has_access
    assert list(subscription.events.filter(kind=K.TIER).values_list("to_tier", flat=True)) == [T.PAID, T.FREE]


def test_a_failed_payment_keeps_access_while_stripe_retries_and_unpaid_ends_it(zine, stripe_api, subscribe, client):
    _, newsletter, plan = zine
    subscription = subscribe(newsletter, "fan@example.org")
    remote = paid_member(stripe_api, plan, subscription)
    invoice = {"id": "in_1", "object": "invoice", "customer": remote["customer"],
               "parent": {"type": "subscription_details", "subscription_details": {"subscription": remote["id"]}}}
    assert post_event(client, "invoice.paid", invoice).status_code == 200
    remote["status"] = "past_due"
    assert post_event(client, "invoice.payment_failed", invoice).status_code == 200
    subscription.refresh_from_db()
    assert subscription.tier == T.PAID and Membership.objects.get().status == "past_due"
    assert selectors.revenue(newsletter.pk)["mrr"] == {"usd": 500}  # still billed
    remote["status"] = "unpaid"  # Stripe's retries ran out (its settings: mark unpaid)
    assert post_event(client, "invoice.payment_failed", invoice).status_code == 200
    subscription.refresh_from_db()
    assert subscription.tier == T.FREE and selectors.revenue(newsletter.pk)["members"] == 0


def test_cancel_at_period_end_keeps_access_until_stripe_ends_it(zine, stripe_api, subscribe, client):
    _, newsletter, plan = zine
    subscription = subscribe(newsletter, "fan@example.org")
    remote = paid_member(stripe_api, plan, subscription)
    remote["cancel_at_period_end"] = True
    assert post_event(client, "customer.subscription.updated", remote).status_code == 200
    subscription.refresh_from_db()
    assert subscription.tier == T.PAID and Membership.objects.get().cancel_at_period_end
    remote.update(status="canceled", ended_at=int(time.time()))
    assert post_event(client, "customer.subscription.deleted", remote).status_code == 200
    subscription.refresh_from_db()
    assert subscription.tier == T.FREE


@pytest.mark.parametrize("policy", [RefundPolicy.END_ACCESS, RefundPolicy.KEEP_ACCESS])
def test_a_refund_does_what_the_creator_chose(zine, stripe_api, subscribe, client, policy):
    _, newsletter, plan = zine
    BillingSettings.objects.create(newsletter=newsletter, refund_policy=policy)
    subscription = subscribe(newsletter, "fan@example.org")
    remote = paid_member(stripe_api, plan, subscription)
    assert post_event(client, "customer.subscription.created", remote).status_code == 200
    charge = {"id": "ch_1", "object": "charge", "customer": remote["customer"], "refunded": True, "amount": 500}
    assert post_event(client, "charge.refunded", charge).status_code == 200
    subscription.refresh_from_db()
    membership = Membership.objects.get()
    assert membership.refunded_at is not None
    canceled = stripe_api.calls("DELETE", f"/v1/subscriptions/{remote['id']}")
    if policy == RefundPolicy.END_ACCESS:
        assert len(canceled) == 1 and subscription.tier == T.FREE and membership.status == "canceled"
    else:
        assert canceled == [] and subscription.tier == T.PAID and membership.status == "active"


def test_a_newsletter_with_its_own_account_is_paid_there_and_refuses_the_installations_secret(
    zine, stripe_api, make_creator, subscribe, client,
):
    _, _zine_newsletter, zine_plan = zine
    owner, own = make_creator("own")
    client.force_login(owner)
    response = client.post("/admin/billing/billingsettings/add/", {
        "newsletter": own.pk, "secret_key": "sk_test_own", "webhook_secret": "whsec_own", "publishable_key": "",
        "refund_policy": "end",
    })
    assert response.status_code == 302
    settings_row = BillingSettings.objects.get(newsletter=own)
    assert "sk_test_own" not in settings_row.secret_key_encrypted and decrypt(settings_row.secret_key_encrypted) == "sk_test_own"
    page = client.get(f"/admin/billing/billingsettings/{settings_row.pk}/change/").content.decode()
    assert "sk_test_own" not in page and "whsec_own" not in page and settings_row.webhook_token in page
    client.logout()

    plan = services.plan_create(newsletter=own, name="Monthly", interval="month", amount=300, currency="usd")
    assert stripe_api.calls("POST", "/v1/prices")[-1]["key"] == "sk_test_own"
    response = client.post("/own/join", {"plan": plan.pk, "email": "fan@example.org"})
    assert response.status_code == 303, response.content.decode()
    assert stripe_api.calls("POST", "/v1/checkout/sessions")[-1]["key"] == "sk_test_own"

    own_url = f"/billing/stripe/webhook/{settings_row.webhook_token}/"
    subscription = Subscription.objects.get(newsletter=own)
    remote = paid_member(stripe_api, plan, subscription, key="sk_test_own")
    assert post_event(client, "customer.subscription.created", remote, url=own_url).status_code == 400  # installation's secret
    assert post_event(client, "customer.subscription.created", remote, url="/billing/stripe/webhook/nope/",
                      secret="whsec_own").status_code == 400
    # At the installation's endpoint: the installation's key cannot read the other account's object.
    assert post_event(client, "customer.subscription.created", remote).status_code == 200
    subscription.refresh_from_db()
    assert subscription.tier == T.FREE
    assert post_event(client, "customer.subscription.created", remote, url=own_url, secret="whsec_own").status_code == 200
    subscription.refresh_from_db()
    assert subscription.tier == T.PAID
    # And an installation-account subscription pointing at the own-account newsletter changes nothing.
    other = subscribe(own, "other@example.org")
    foreign = paid_member(stripe_api, zine_plan, other)
    assert post_event(client, "customer.subscription.created", foreign).status_code == 200
    other.refresh_from_db()
    assert other.tier == T.FREE and not Membership.objects.filter(subscription=other).exists()


def test_without_keys_billing_says_it_is_not_set_up_and_nothing_else_breaks(make_creator, settings, client):
    settings.STRIPE_SECRET_KEY = settings.STRIPE_WEBHOOK_SECRET = ""
    creator, newsletter = make_creator("zine")
    client.force_login(creator)
    assert "Billing is not set up" in client.get("/admin/billing/plan/", follow=True).content.decode()
    client.logout()
    Plan.objects.create(newsletter=newsletter, name="Monthly", amount=500, stripe_price_id="price_x")
    page = client.get("/zine/")
    assert page.status_code == 200 and 'id="plans"' not in page.content.decode()
    response = client.post("/zine/join", {"plan": "1", "email": "fan@example.org"})
    assert response.status_code == 503 and "not set up" in response.content.decode()
    body, header = signed("customer.subscription.created", {"id": "sub_1"}, "whsec_any")
    assert client.post(WEBHOOK, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header).status_code == 400
    assert client.post("/zine/subscribe", {"email": "free@example.org"}).status_code == 200


def test_join_refuses_bad_input_with_a_clear_answer(zine, client):
    _, newsletter, plan = zine
    assert client.post("/zine/join", {"plan": plan.pk, "email": "not an address"}).status_code == 400
    assert client.post("/zine/join", {"plan": "99999", "email": "fan@example.org"}).status_code == 400
    assert client.post("/zine/join", {"plan": "<script>", "email": "fan@example.org"}).status_code == 400
    assert client.get("/zine/join").status_code == 405
    assert not Subscription.objects.filter(newsletter=newsletter).exists()


def test_comps_are_granted_in_the_admin_and_end_on_their_date(zine, subscribe, client):
    user, newsletter, _ = zine
    subscription = subscribe(newsletter, "friend@example.org")
    client.force_login(user)
    until = (timezone.now() + timedelta(days=3)).date()
    response = client.post("/admin/billing/membership/add/", {"subscription": subscription.pk, "until": until})
    assert response.status_code == 302, response.content.decode()[:2000]
    subscription.refresh_from_db()
    assert subscription.tier == T.COMPED
    event = subscription.events.get(kind=K.TIER)
    assert (event.actor, event.actor_user, event.to_tier) == ("creator", user, T.COMPED)
    assert selectors.revenue(newsletter.pk)["comped"] == 1
    assert "1 comped" in client.get("/admin/billing/membership/").content.decode()
    assert services.comps_expire(now=timezone.now() + timedelta(days=2)) == 0
    assert services.comps_expire(now=timezone.now() + timedelta(days=5)) == 1
    subscription.refresh_from_db()
    assert subscription.tier == T.FREE and subscription.events.filter(kind=K.TIER, actor="system").exists()


def test_another_creator_cannot_see_or_comp_this_creators_fans(zine, subscribe, make_creator, client):
    _, newsletter, plan = zine
    subscription = subscribe(newsletter, "fan@example.org")
    Membership.objects.create(subscription=subscription, status="active", plan=plan, stripe_subscription_id="sub_x")
    other, _ = make_creator("other")
    client.force_login(other)
    assert "fan@example.org" not in client.get("/admin/billing/membership/").content.decode()
    assert client.get(f"/admin/billing/plan/{plan.pk}/change/").status_code == 404  # not theirs
    response = client.post("/admin/billing/membership/add/", {"subscription": subscription.pk})
    assert response.status_code == 200  # the form refuses a subscription they cannot see
    subscription.refresh_from_db()
    assert subscription.tier == T.FREE


def test_the_export_carries_the_members_with_their_plan_and_stripe_state(zine, stripe_api, subscribe, client):
    import csv
    import io
    import zipfile

    from portability.exporting import export_newsletter

    _, newsletter, plan = zine
    payer = subscribe(newsletter, "payer@example.org")
    remote = paid_member(stripe_api, plan, payer)
    assert post_event(client, "customer.subscription.created", remote).status_code == 200
    friend = subscribe(newsletter, "friend@example.org")
    services.comp_grant(subscription_id=friend.pk)
    out = io.BytesIO()
    counts = export_newsletter(newsletter, out)
    with zipfile.ZipFile(out) as zf:
        rows = list(csv.DictReader(io.TextIOWrapper(zf.open("members.csv"), encoding="utf-8")))
    assert counts["members"] == 2
    by_email = {row["email"]: row for row in rows}
    assert by_email["payer@example.org"]["plan"] == "Monthly" and by_email["payer@example.org"]["amount"] == "500"
    assert by_email["payer@example.org"]["stripe_subscription_id"] == remote["id"]
    assert by_email["payer@example.org"]["status"] == "active" and by_email["friend@example.org"]["source"] == "comp"


def test_the_paywall_offers_the_plans_and_a_join_there_is_counted_for_the_issue(zine, stripe_api, client):
    from newsletters.models import Issue

    _, newsletter, plan = zine
    Issue.objects.create(newsletter=newsletter, title="Deep", slug="deep", status=Issue.Status.SENT,
                         sent_at=timezone.now(), body_markdown="Opening.\n\n<!-- paywall -->\n\nThe rest.")
    response = client.get("/zine/issues/deep/")
    html = response.content.decode()
    assert "The rest." not in html and 'action="/zine/join"' in html and f'value="{plan.pk}"' in html
    assert 'name="ref" value="issue-deep"' in html and "https://checkout.stripe.com" in response["Content-Security-Policy"]
    assert client.post("/zine/join", {"plan": plan.pk, "email": "reader@example.org", "ref": "issue-deep"}).status_code == 303
    assert Subscription.objects.get(subscriber__email="reader@example.org").source == "issue-deep"


def test_the_members_page_shows_the_plan_and_opens_the_customer_portal(zine, stripe_api, subscribe, client):
    from billing.members import member_user_ensure

    _, newsletter, plan = zine
    subscription = subscribe(newsletter, "payer@example.org")
    remote = paid_member(stripe_api, plan, subscription)
    assert post_event(client, "customer.subscription.created", remote).status_code == 200
    user, created = member_user_ensure("payer@example.org")
    assert not created  # the login was made when the membership began
    client.force_login(user)
    page = client.get("/account/")
    html = page.content.decode()
    assert "Monthly" in html and "$5.00" in html and "Next payment on" in html
    assert "https://billing.stripe.com" in page["Content-Security-Policy"]
    response = client.post(f"/account/billing/{subscription.pk}/")
    assert response.status_code == 303 and response["Location"].startswith(f"{stripe_api.url}/portal/")
    call = stripe_api.calls("POST", "/v1/billing_portal/sessions")[-1]
    assert call["params"]["customer"] == remote["customer"] and call["params"]["return_url"].endswith("/account/")
    client.force_login(member_user_ensure("someone@example.org")[0])
    assert client.post(f"/account/billing/{subscription.pk}/").status_code == 404  # not theirs
