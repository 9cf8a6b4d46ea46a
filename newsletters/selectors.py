"""Reads about publications."""

from subscribers.models import Subscription

from .models import Issue


def audience_count(issue):
    """How many people a send of this issue would reach right now."""
    subscriptions = Subscription.objects.filter(newsletter_id=issue.newsletter_id, status=Subscription.Status.ACTIVE)
    if issue.audience == Issue.Audience.PAID:
        subscriptions = subscriptions.filter(tier=Subscription.Tier.PAID)
    return subscriptions.count()
