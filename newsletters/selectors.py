"""Reads about publications."""

from subscribers.selectors import audience as subscribers_audience

from .models import Issue


def issue_audience(issue):
    """The subscriptions a send of this issue would reach right now (subscribers.selectors.audience)."""
    return subscribers_audience(issue.newsletter_id, paid_only=issue.audience == Issue.Audience.PAID)


def audience_count(issue):
    """How many people a send of this issue would reach right now: the number the snapshot writes."""
    return issue_audience(issue).count()
