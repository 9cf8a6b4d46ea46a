"""Money: what a newsletter charges (Plan), whose Stripe account takes it (BillingSettings), who pays
(Membership) and what Stripe told us (StripeEvent, stored once by its id).

A membership's state is a copy of Stripe's Subscription object, re-read on every event; the
subscription's tier follows from it through the one writer (subscribers.services)."""

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from subscribers.models import Subscription


class RefundPolicy(models.TextChoices):
    END_ACCESS = "end", _("End the membership at once")
    KEEP_ACCESS = "keep", _("Keep the membership until it ends")


def _webhook_token():
    return secrets.token_urlsafe(24)


class BillingSettings(models.Model):
    """A newsletter's billing choices and, optionally, its own Stripe account.

    Without keys of its own the newsletter is paid into the installation's account
    (STRIPE_SECRET_KEY). Keys are stored encrypted (billing.crypto) and never shown again."""

    newsletter = models.OneToOneField("newsletters.Newsletter", on_delete=models.CASCADE, related_name="billing")
    secret_key_encrypted = models.TextField(blank=True, editable=False)
    webhook_secret_encrypted = models.TextField(blank=True, editable=False)
    publishable_key = models.CharField(max_length=200, blank=True)
    # The newsletter's own webhook address is /billing/stripe/webhook/<token>/.
    webhook_token = models.CharField(max_length=64, unique=True, default=_webhook_token, editable=False)
    allow_promotion_codes = models.BooleanField(
        default=False, help_text=_("Let fans type a Stripe promotion code at checkout.")
    )
    refund_policy = models.CharField(
        max_length=8, choices=RefundPolicy.choices, default=RefundPolicy.END_ACCESS,
        help_text=_("What a refund does to the member's access to paid issues."),
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("billing settings")
        verbose_name_plural = _("billing settings")

    def __str__(self):
        return str(self.newsletter)

    @property
    def has_own_account(self):
        return bool(self.secret_key_encrypted)


class PlanInterval(models.TextChoices):
    MONTH = "month", _("Monthly")
    YEAR = "year", _("Yearly")


class Plan(models.Model):
    """A price a fan can pay for a newsletter's paid tier; a Stripe Price of the newsletter's account."""

    Interval = PlanInterval

    newsletter = models.ForeignKey("newsletters.Newsletter", on_delete=models.CASCADE, related_name="plans")
    name = models.CharField(max_length=100, help_text=_("What fans see, e.g. “Monthly” or “Supporter”."))
    interval = models.CharField(max_length=8, choices=Interval.choices, default=Interval.MONTH)
    # In the currency's smallest unit (cents; đồng has none: 50000 is 50.000 ₫).
    amount = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    trial_days = models.PositiveSmallIntegerField(default=0, help_text=_("Free days before the first payment."))
    stripe_product_id = models.CharField(max_length=255, blank=True)
    stripe_price_id = models.CharField(max_length=255)
    active = models.BooleanField(default=True, help_text=_("Offered on the bio page and at the paywall."))
    position = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["newsletter", "stripe_price_id"], name="plan_price_unique"),
            models.CheckConstraint(condition=models.Q(interval__in=PlanInterval.values), name="plan_interval_valid"),
        ]
        ordering = ["position", "amount"]

    def __str__(self):
        return f"{self.name} ({self.display_amount}/{self.interval})"

    @property
    def display_amount(self):
        from .money import format_amount

        return format_amount(self.amount, self.currency)

    @property
    def monthly_amount(self):
        """What the plan brings in per month, in the smallest unit (a yearly price over 12)."""
        return self.amount if self.interval == PlanInterval.MONTH else self.amount / 12


class MembershipSource(models.TextChoices):
    STRIPE = "stripe", _("Stripe")
    COMP = "comp", _("Complimentary (granted by the creator)")


# Stripe's subscription statuses that give access to paid issues. past_due keeps it while
# Stripe retries the payment (its retry settings decide when it becomes unpaid or canceled).
ACCESS_STATUSES = ("active", "trialing", "past_due")


class Membership(models.Model):
    """What makes a subscription paid or comped: a Stripe subscription, or the creator's grant."""

    Source = MembershipSource

    subscription = models.OneToOneField(Subscription, on_delete=models.CASCADE, related_name="membership")
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.STRIPE)
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.SET_NULL, related_name="memberships")
    stripe_customer_id = models.CharField(max_length=255, blank=True, db_index=True)
    stripe_subscription_id = models.CharField(max_length=255, blank=True)
    # Stripe's Subscription.status (active, trialing, past_due, canceled, unpaid, incomplete, …).
    status = models.CharField(max_length=24, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    ended_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    # A comp's end (none: until the creator ends it).
    comp_until = models.DateTimeField(null=True, blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    checkout_session_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_subscription_id"], condition=~models.Q(stripe_subscription_id=""),
                name="membership_stripe_subscription_unique",
            ),
        ]

    def __str__(self):
        return f"{self.subscription} ({self.get_source_display()}, {self.status or '—'})"

    @property
    def has_access(self):
        if self.source == MembershipSource.COMP:
            return self.ended_at is None and (self.comp_until is None or self.comp_until > timezone.now())
        return self.status in ACCESS_STATUSES


class StripeEvent(models.Model):
    """Every webhook event, stored once by (account, id) before it is applied; a replay finds it."""

    # The account it came to: "" for the installation's, else the newsletter's webhook token.
    account = models.CharField(max_length=64, blank=True)
    event_id = models.CharField(max_length=255)
    type = models.CharField(max_length=100)
    livemode = models.BooleanField(default=False)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "event_id"], name="stripeevent_unique")]
        ordering = ["-received_at"]

    def __str__(self):
        return f"{self.type} {self.event_id}"
