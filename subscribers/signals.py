"""What the audience tells the apps above it, which import this module and never the other way.

Receivers run inside the writer's transaction, so what they write (an outgoing webhook, a row
deleted with a person) commits or rolls back with the change itself.
"""

from typing import NamedTuple

from django.dispatch import Signal


class Change(NamedTuple):
    subscription_id: int
    kind: str  # a SubscriptionEvent.Kind
    from_status: str  # "" for a new subscription
    to_status: str
    from_tier: str
    to_tier: str
    actor: str


# changes=[Change, …]: sent by the one writer (services.subscription_change and the inserts of
# new subscriptions) after the events are written. Bulk imports do not send it per row.
subscriptions_changed = Signal()

# subscriber_ids=[…], newsletter_ids=[…] or None (every newsletter): sent by the erasure before
# the audience's own rows go, so the apps above can delete what they hold about those people.
subscribers_erasing = Signal()
