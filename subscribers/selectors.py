"""Reads about the audience. The one definition of who a send reaches lives here."""

from django.db.models import Exists, OuterRef
from django.db.models.functions import Lower

from .models import Subscription, Suppression


def audience(newsletter_id, *, paid_only=False):
    """The subscriptions a send of this newsletter reaches now: active, the paid tier when the
    issue is for paying members, and never an address on the suppression list.

    The snapshot inserts exactly these rows, the send button counts them, the admin shows their
    number and a batch re-checks its rows against them, so the number a creator is shown is
    the number that is sent.
    """
    suppressed = Suppression.objects.annotate(address=Lower("email")).filter(
        address=Lower(OuterRef("subscriber__email"))
    )
    subscriptions = Subscription.objects.filter(newsletter_id=newsletter_id, status=Subscription.Status.ACTIVE)
    if paid_only:
        subscriptions = subscriptions.filter(tier__in=Subscription.Tier.MEMBERS)
    return subscriptions.filter(~Exists(suppressed))


def audience_count(newsletter_id, *, paid_only=False):
    return audience(newsletter_id, paid_only=paid_only).count()
