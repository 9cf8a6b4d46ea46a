"""The feedback app's part of an erasure (subscribers_erasing): what providers said about the person.

Connected after the delivery app's part (INSTALLED_APPS order), so the ledger rows of the erased
newsletters are gone by then: the person's events that named them now name nothing and go too.
"""

from delivery.models import Delivery
from subscribers.models import Subscriber

from .models import FeedbackEvent


def forget_subscribers(sender, *, subscriber_ids, newsletter_ids=None, **kwargs):
    emails = list(Subscriber.objects.filter(pk__in=list(subscriber_ids)).values_list("email", flat=True))
    for email in emails:
        events = FeedbackEvent.objects.filter(recipient__iexact=email)
        if newsletter_ids is not None:  # only those about the erased newsletters' mail
            events = events.filter(delivery_id__isnull=False).exclude(
                delivery_id__in=Delivery.objects.filter(subscriber_id__in=list(subscriber_ids)).values("id")
            )
        events.delete()
