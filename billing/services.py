"""Billing's writes: plans in Stripe, Checkout and Portal sessions, webhook events, memberships, comps.

A membership's state is never taken from the order events arrive in: every event about a Stripe
subscription re-reads that subscription from Stripe and copies its state. The subscription's
tier follows from the membership through subscribers.services.subscription_change(), the one
writer, which leaves an event (actor "stripe" or "creator").
"""

import json
import logging
from datetime import UTC, datetime

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from subscribers.models import Subscription, SubscriptionEvent
from subscribers.services import subscription_change, subscription_for_checkout

from .accounts import account_by_key, account_serves, client, require_account
from .members import member_user_ensure
from .models import ACCESS_STATUSES, BillingSettings, Membership, Plan, RefundPolicy, StripeEvent

logger = logging.getLogger(__name__)
S, T, K = Subscription.Status, Subscription.Tier, SubscriptionEvent.Kind
CHECKOUT_LOCALES = {"en", "vi", "fr", "de", "es", "it", "ja", "nl", "pt", "zh"}
HANDLED = {
    "checkout.session.completed", "customer.subscription.created", "customer.subscription.updated",
    "customer.subscription.deleted", "invoice.paid", "invoice.payment_failed", "charge.refunded",
}


class BillingError(Exception):
    """Stripe refused, or could not be reached (`unreachable`); the message is for the creator or the fan."""

    def __init__(self, message, *, unreachable=False, missing=False):
        super().__init__(message)
        self.unreachable, self.missing = unreachable, missing


def _stripe(call, *args, **kwargs):
    try:
        return call(*args, **kwargs).to_dict()
    except stripe.APIConnectionError as error:
        raise BillingError("Stripe could not be reached. Please try again in a minute.", unreachable=True) from error
    except stripe.StripeError as error:
        missing = getattr(error, "code", None) == "resource_missing"
        raise BillingError(error.user_message or str(error), missing=missing) from error


class AlreadyMember(BillingError):
    """A checkout for an address that pays already (they manage their plan in the Customer Portal)."""


# --- Plans -----------------------------------------------------------------------------------


def plan_create(*, newsletter, name, interval, amount, currency, trial_days=0):
    """A Product and a recurring Price in the newsletter's Stripe account, and the Plan for them."""
    api = client(require_account(newsletter.pk)).v1
    metadata = {"ownedaudience_newsletter": newsletter.slug}
    product = _stripe(api.products.create, {"name": f"{newsletter.name}: {name}", "metadata": metadata})
    price = _stripe(api.prices.create, {
        "product": product["id"], "unit_amount": amount, "currency": currency.lower(),
        "recurring": {"interval": interval}, "nickname": name, "metadata": metadata,
    })
    return Plan.objects.create(
        newsletter=newsletter, name=name, interval=interval, amount=amount, currency=currency.lower(),
        trial_days=trial_days, stripe_product_id=product["id"], stripe_price_id=price["id"],
    )


def plan_link(*, newsletter, price_id, name="", trial_days=0):
    """A Plan for a Price that already exists in the newsletter's account, read from Stripe."""
    price = _stripe(client(require_account(newsletter.pk)).v1.prices.retrieve, price_id)
    recurring = price.get("recurring") or {}
    if recurring.get("interval") not in Plan.Interval.values or recurring.get("interval_count", 1) != 1:
        raise BillingError(f"{price_id} is not a monthly or yearly recurring price.")
    if not price.get("active", True) or price.get("unit_amount") is None:
        raise BillingError(f"{price_id} is archived or has no fixed amount.")
    product = price.get("product")
    return Plan.objects.create(
        newsletter=newsletter, name=name or price.get("nickname") or recurring["interval"].title(),
        interval=recurring["interval"], amount=price["unit_amount"], currency=price["currency"],
        trial_days=trial_days, stripe_price_id=price["id"],
        stripe_product_id=product if isinstance(product, str) else (product or {}).get("id", ""),
    )


# --- Checkout and the Customer Portal --------------------------------------------------------


def checkout_start(*, plan, email, success_url, cancel_url, source="checkout"):
    """A Checkout Session in subscription mode for `plan`; returns the URL to send the fan to.

    The fan's subscription (made pending, without a confirmation email, if they had none) rides
    along as client_reference_id and in the Stripe subscription's metadata, so whichever event
    arrives first finds it."""
    newsletter = plan.newsletter
    api = client(require_account(newsletter.pk)).v1
    subscription = subscription_for_checkout(newsletter=newsletter, email=email, source=source)
    membership = Membership.objects.filter(subscription=subscription).first()
    if membership is not None and membership.has_access and membership.source == Membership.Source.STRIPE:
        raise AlreadyMember("This address is a paying member already.")
    metadata = {"ownedaudience_subscription": str(subscription.pk), "ownedaudience_plan": str(plan.pk)}
    params = {
        "mode": "subscription",
        "line_items": [{"price": plan.stripe_price_id, "quantity": 1}],
        "client_reference_id": str(subscription.pk),
        "success_url": success_url,
        "cancel_url": cancel_url,
        "metadata": metadata,
        "subscription_data": {"metadata": metadata},
        "locale": newsletter.language if newsletter.language in CHECKOUT_LOCALES else "auto",
    }
    if membership is not None and membership.stripe_customer_id:
        params["customer"] = membership.stripe_customer_id
    else:
        params["customer_email"] = subscription.subscriber.email
    if plan.trial_days:
        params["subscription_data"]["trial_period_days"] = plan.trial_days
    billing = BillingSettings.objects.filter(newsletter=newsletter).first()
    if billing is not None and billing.allow_promotion_codes:
        params["allow_promotion_codes"] = True
    session = _stripe(api.checkout.sessions.create, params)
    return session["url"]


def portal_url(membership, return_url):
    """A Stripe Customer Portal session for the member (change card, switch plan, cancel)."""
    if not membership.stripe_customer_id:
        raise BillingError("This membership is not paid through Stripe.")
    api = client(require_account(membership.subscription.newsletter_id)).v1
    session = _stripe(api.billing_portal.sessions.create,
                      {"customer": membership.stripe_customer_id, "return_url": return_url})
    return session["url"]


# --- Webhook events --------------------------------------------------------------------------


class EventRefused(Exception):
    """Not a genuine, recent event for this endpoint: answered 400, nothing stored."""


def event_receive(account_key, payload, signature):
    """Verify `payload` (the raw body) against the endpoint's secret and store the event once by
    its id. Returns (event row, new); a replay returns the stored row and new=False."""
    account = account_by_key(account_key)
    if account is None or not account.webhook_secret:
        raise EventRefused("No webhook secret is set for this endpoint.")
    try:
        event = stripe.Webhook.construct_event(
            payload, signature, account.webhook_secret, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE,
        )
    except (stripe.SignatureVerificationError, ValueError) as error:
        raise EventRefused(str(error)) from error
    data = json.loads(payload)
    try:
        with transaction.atomic():
            row = StripeEvent.objects.create(
                account=account.key, event_id=event.id, type=data.get("type", ""),
                livemode=bool(data.get("livemode")), payload=data,
            )
    except IntegrityError:
        return StripeEvent.objects.get(account=account.key, event_id=event.id), False
    return row, True


def event_apply(event_id):
    """Apply a stored event once (a row already applied is left alone). An error stays on the row
    and is raised, so the webhook answers 500 and Stripe sends the event again."""
    StripeEvent.objects.filter(pk=event_id, applied_at__isnull=True).update(attempts=F("attempts") + 1)
    try:
        with transaction.atomic():
            row = StripeEvent.objects.select_for_update().get(pk=event_id)  # one delivery at a time
            if row.applied_at is None:
                account = account_by_key(row.account)
                if account is not None and row.type in HANDLED:
                    _apply(account, row.type, row.payload["data"]["object"])
                row.applied_at, row.error = timezone.now(), ""
                StripeEvent.objects.filter(pk=row.pk).update(applied_at=row.applied_at, error="")
    except Exception as error:
        StripeEvent.objects.filter(pk=event_id).update(error=f"{error.__class__.__name__}: {error}"[:2000])
        raise
    return row


def _apply(account, kind, obj):
    if kind == "checkout.session.completed":
        if obj.get("mode") == "subscription" and obj.get("subscription"):
            membership_sync(account, _id(obj["subscription"]), checkout_session=obj)
    elif kind.startswith("customer.subscription."):
        membership_sync(account, obj["id"])
    elif kind.startswith("invoice."):
        subscription_id = obj.get("subscription") or (
            ((obj.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        )
        if subscription_id:
            membership_sync(account, _id(subscription_id))
    elif kind == "charge.refunded":
        refund_apply(account, obj)


def _id(value):
    return value if isinstance(value, str) else value["id"]


def _time(value):
    return datetime.fromtimestamp(value, tz=UTC) if value else None


# --- Memberships -----------------------------------------------------------------------------


def membership_sync(account, stripe_subscription_id, *, checkout_session=None):
    """Copy a Stripe subscription's state (read from Stripe now) onto its membership and the tier.

    Returns the Membership, or None when the subscription is not one of ours for this account."""
    try:
        remote = _stripe(client(account).v1.subscriptions.retrieve, stripe_subscription_id)
    except BillingError as error:
        if not error.missing:
            raise
        logger.warning("Stripe subscription %s is not in this account", stripe_subscription_id)
        return None  # another account's object: nothing of this account's to change
    subscription = _our_subscription(remote, checkout_session)
    if subscription is None or not account_serves(account, subscription.newsletter_id):
        logger.warning("Stripe subscription %s: no subscription of this account's newsletters", remote["id"])
        return None
    item = ((remote.get("items") or {}).get("data") or [{}])[0]
    price_id = (item.get("price") or {}).get("id", "")
    with transaction.atomic():
        membership, _ = Membership.objects.select_for_update().get_or_create(subscription=subscription)
        remote_access = remote.get("status") in ACCESS_STATUSES
        if membership.source == Membership.Source.COMP and membership.has_access and not remote_access:
            return membership  # a comp granted since: an old Stripe subscription's news does not end it
        membership.source = Membership.Source.STRIPE
        membership.stripe_subscription_id = remote["id"]
        membership.stripe_customer_id = _id(remote["customer"]) if remote.get("customer") else ""
        membership.status = remote.get("status", "")
        # Since Stripe's 2025 API versions the period lives on the subscription's items.
        membership.current_period_end = _time(remote.get("current_period_end") or item.get("current_period_end"))
        membership.cancel_at_period_end = bool(remote.get("cancel_at_period_end"))
        membership.ended_at = _time(remote.get("ended_at"))
        membership.plan = Plan.objects.filter(newsletter_id=subscription.newsletter_id,
                                              stripe_price_id=price_id).first() or membership.plan
        if checkout_session is not None:
            membership.checkout_session_id = checkout_session.get("id", "")
        membership.save()
        subscription.refresh_from_db(fields=["status", "tier"])
        _tier_follows(membership, subscription, checkout_session)
        if membership.has_access:
            member_user_ensure(subscription.subscriber.email)  # so they can log in to read on the web
    return membership


def _our_subscription(remote, checkout_session):
    membership = Membership.objects.filter(stripe_subscription_id=remote["id"]).select_related("subscription").first()
    if membership is not None:
        return membership.subscription
    reference = (remote.get("metadata") or {}).get("ownedaudience_subscription") or (
        (checkout_session or {}).get("client_reference_id")
    )
    if not reference or not str(reference).isdigit():
        return None
    return Subscription.objects.filter(pk=int(reference)).first()


def _tier_follows(membership, subscription, checkout_session=None):
    """The tier the membership implies, through the one writer. A completed checkout is consent:
    a pending or unsubscribed fan becomes active, with the session's id on the event."""
    access = membership.has_access
    tier = T.PAID if access else T.FREE
    detail = f"Stripe subscription {membership.stripe_subscription_id}: {membership.status}"
    if checkout_session is not None and access and subscription.status in (S.PENDING, S.UNSUBSCRIBED):
        now = timezone.now()
        plan = membership.plan.name if membership.plan else "a paid plan"
        subscription_change(
            subscription.pk, kind=K.CONFIRM if subscription.status == S.PENDING else K.REJOIN, actor="stripe",
            status=S.ACTIVE, tier=tier, detail=f"{detail} (Checkout Session {checkout_session.get('id', '')})",
            fields={"confirmed_at": now},
            consent={"consent_form": "stripe-checkout", "consent_at": now, "consent_ip": None,
                     "consent_user_agent": "", "consent_text": (
                         f"Paid for {plan} through Stripe Checkout (session {checkout_session.get('id', '')}).")},
        )
        return
    subscription_change(subscription.pk, kind=K.TIER, actor="stripe", tier=tier, detail=detail)  # no-op if same


def refund_apply(account, charge):
    """A refunded charge does what the newsletter's creator chose: end access at once (the Stripe
    subscription is canceled and the tier goes back to free) or keep it until it ends."""
    customer = charge.get("customer")
    membership = (Membership.objects.filter(stripe_customer_id=_id(customer)).select_related("subscription").first()
                  if customer else None)
    if membership is None or not account_serves(account, membership.subscription.newsletter_id):
        return None
    Membership.objects.filter(pk=membership.pk).update(refunded_at=timezone.now())
    billing = BillingSettings.objects.filter(newsletter_id=membership.subscription.newsletter_id).first()
    policy = billing.refund_policy if billing is not None else RefundPolicy.END_ACCESS
    if policy == RefundPolicy.END_ACCESS and membership.status in ACCESS_STATUSES:
        _stripe(client(account).v1.subscriptions.cancel, membership.stripe_subscription_id)
        return membership_sync(account, membership.stripe_subscription_id)
    return membership


# --- Comped members --------------------------------------------------------------------------


def comp_grant(*, subscription_id, until=None, user=None, actor="creator"):
    """The creator gives a fan the paid tier without Stripe, until a date or for good."""
    with transaction.atomic():
        membership, _ = Membership.objects.select_for_update().get_or_create(subscription_id=subscription_id)
        if membership.source == Membership.Source.STRIPE and membership.has_access:
            raise BillingError("This fan pays through Stripe already.")
        membership.source, membership.comp_until, membership.ended_at = Membership.Source.COMP, until, None
        membership.granted_by, membership.status = user, "comped"
        membership.save()
        detail = f"complimentary until {until:%Y-%m-%d}" if until else "complimentary"
        subscription_change(subscription_id, kind=K.TIER, actor=actor, actor_user=user, tier=T.COMPED,
                            detail=detail)
        member_user_ensure(membership.subscription.subscriber.email)
    return membership


def comp_end(membership_id, *, user=None, detail="comp ended by the creator", actor=None):
    with transaction.atomic():
        membership = Membership.objects.select_for_update().get(pk=membership_id)
        if membership.source != Membership.Source.COMP or membership.ended_at is not None:
            return False
        membership.ended_at, membership.status = timezone.now(), "ended"
        membership.save(update_fields=["ended_at", "status", "updated_at"])
        subscription_change(
            Subscription.objects.filter(pk=membership.subscription_id, tier=T.COMPED), kind=K.TIER,
            actor=actor or ("creator" if user else "system"), actor_user=user, tier=T.FREE, detail=detail,
        )
    return True


def comps_expire(now=None):
    """End every comp whose date has passed (beat runs this); returns how many."""
    now = now or timezone.now()
    due = Membership.objects.filter(source=Membership.Source.COMP, ended_at__isnull=True, comp_until__lte=now)
    return sum(comp_end(pk, detail="comp reached its end date") for pk in due.values_list("pk", flat=True))
