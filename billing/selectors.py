"""Reads about money: plans on offer, members, and what they bring in (from stored Stripe state)."""

from collections import defaultdict

from django.db.models.functions import Lower

from subscribers.models import Subscription

from .accounts import account_for, installation_account
from .models import ACCESS_STATUSES, Membership, Plan


def installation_ready():
    return installation_account() is not None


def billing_ready(newsletter_id):
    return account_for(newsletter_id) is not None


def plans_on_offer(newsletter_id):
    """The plans a fan may pick (none when billing is not set up)."""
    if not billing_ready(newsletter_id):
        return Plan.objects.none()
    return Plan.objects.filter(newsletter_id=newsletter_id, active=True)


def paying(newsletter_id):
    """Memberships paid through Stripe that give access now (trialing and past due included)."""
    return Membership.objects.filter(
        subscription__newsletter_id=newsletter_id, source=Membership.Source.STRIPE, status__in=ACCESS_STATUSES,
    )


def revenue(newsletter_id):
    """{"members": n paying, "trialing": n, "comped": n, "mrr": {currency: smallest units a month}}.

    MRR counts active and past-due Stripe memberships (a trial pays nothing yet), yearly plans over 12."""
    mrr = defaultdict(float)
    members = trialing = 0
    for status, amount, interval, currency in paying(newsletter_id).values_list(
        "status", "plan__amount", "plan__interval", "plan__currency",
    ):
        members += 1
        if status == "trialing":
            trialing += 1
        elif amount is not None:
            mrr[currency] += amount if interval == Plan.Interval.MONTH else amount / 12
    comped = Subscription.objects.filter(newsletter_id=newsletter_id, tier=Subscription.Tier.COMPED).count()
    return {"members": members, "trialing": trialing, "comped": comped,
            "mrr": {currency: round(value) for currency, value in sorted(mrr.items())}}


def membership_of(subscription_id):
    return Membership.objects.filter(subscription_id=subscription_id).select_related("plan").first()



def member_subscriptions(email):
    """The subscriptions that make `email` a member (paid or comped tier), whatever their mailing
    status: reading paid issues on the web follows the tier, so a paying member who turned the
    emails off still reads the archive. Each with its newsletter and its membership."""
    if not email:
        return Subscription.objects.none()
    return (
        Subscription.objects.alias(address=Lower("subscriber__email"))
        .filter(address=email.strip().lower(), tier__in=Subscription.Tier.MEMBERS)
        .select_related("newsletter", "membership__plan")
        .order_by("newsletter__name")
    )


def member_subscription(email, newsletter_id):
    """The subscription that makes `email` a member of the newsletter, or None."""
    return member_subscriptions(email).filter(newsletter_id=newsletter_id).first()
