"""Which Stripe account a newsletter is paid into, and a client for it.

By default the installation's (STRIPE_SECRET_KEY); a newsletter whose owner entered keys of its
own uses those, so two creators on one installation are paid into their own accounts and
never see each other's customers. Every call goes through the stripe library's own client;
STRIPE_API_BASE points it elsewhere (the tests' stand-in)."""

from dataclasses import dataclass

import stripe
from django.conf import settings

from .crypto import decrypt
from .models import BillingSettings


class BillingNotSetUp(Exception):
    """No Stripe account for this newsletter: billing pages say so, nothing else breaks."""


@dataclass(frozen=True)
class Account:
    key: str  # "" for the installation's account, else the newsletter's webhook token
    secret_key: str
    webhook_secret: str
    publishable_key: str


def installation_account():
    if not settings.STRIPE_SECRET_KEY:
        return None
    return Account("", settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET, settings.STRIPE_PUBLISHABLE_KEY)


def own_account(billing):
    secret_key = decrypt(billing.secret_key_encrypted)
    if not secret_key:
        return None
    return Account(billing.webhook_token, secret_key, decrypt(billing.webhook_secret_encrypted),
                   billing.publishable_key)


def account_for(newsletter_id):
    """The account that takes this newsletter's money, or None when billing is not set up."""
    billing = BillingSettings.objects.filter(newsletter_id=newsletter_id).first()
    if billing is not None and billing.has_own_account:
        return own_account(billing)
    return installation_account()


def account_by_key(key):
    """The account a webhook arrived for: "" the installation's, else a newsletter's token."""
    if not key:
        return installation_account()
    billing = BillingSettings.objects.filter(webhook_token=key).first()
    return own_account(billing) if billing is not None else None


def account_serves(account, newsletter_id):
    """Whether `account` is the one this newsletter is paid into (an event about another
    newsletter's member is not this account's business)."""
    mine = account_for(newsletter_id)
    return mine is not None and mine.key == account.key


def require_account(newsletter_id):
    account = account_for(newsletter_id)
    if account is None:
        raise BillingNotSetUp("Billing is not set up: no Stripe keys for this newsletter or the installation.")
    return account


def client(account):
    options = {"max_network_retries": 2}
    if settings.STRIPE_API_BASE:
        options["base_addresses"] = {"api": settings.STRIPE_API_BASE}
    return stripe.StripeClient(account.secret_key, **options)
