"""State changes for the audience."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import Subscriber, Subscription


def normalize_email(email):
    """Trim; the domain is case-free, and uniqueness ignores case entirely."""
    return email.strip()


def subscriber_ensure(*, email, name=""):
    """The one subscriber row for this address, whatever its case; made if missing."""
    email = normalize_email(email)
    existing = Subscriber.objects.filter(email__iexact=email).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            return Subscriber.objects.create(email=email, name=name)
    except IntegrityError:
        # Another request made it between our read and our write.
        return Subscriber.objects.get(email__iexact=email)


def subscription_exists(*, email, newsletter):
    return Subscription.objects.filter(
        subscriber__email__iexact=normalize_email(email), newsletter=newsletter
    ).exists()


def subscriptions_unsubscribe(queryset):
    """Unsubscribe every subscription in `queryset` that is not already out; returns how many."""
    return queryset.exclude(status=Subscription.Status.UNSUBSCRIBED).update(
        status=Subscription.Status.UNSUBSCRIBED, unsubscribed_at=timezone.now()
    )
