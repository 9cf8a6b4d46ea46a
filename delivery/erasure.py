"""The delivery app's part of an erasure (subscribers_erasing): the person's ledger rows and dev outbox mail."""

import re

from django.db import connection
from django.db.models import Q

from newsletters.models import Issue
from subscribers.models import Subscriber

from .models import Delivery, DeliveryOpen, LinkClick, OutboxMessage

# The ledger has no index by subscriber (it doubled the snapshot's time): its rows are found through
# the unique (issue, subscriber) index instead, one probe per issue and person.
LEDGER_DELETE = (
    f"DELETE FROM {Delivery._meta.db_table} WHERE issue_id = ANY(%s) AND subscriber_id = ANY(%s) RETURNING id"
)


def forget_subscribers(sender, *, subscriber_ids, newsletter_ids=None, **kwargs):
    """Their deliveries and outbox messages: of these newsletters' issues, or of every one (None)."""
    issues = Issue.objects.all() if newsletter_ids is None else Issue.objects.filter(newsletter_id__in=newsletter_ids)
    issue_ids, subscriber_ids = list(issues.values_list("id", flat=True)), list(subscriber_ids)
    if issue_ids and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(LEDGER_DELETE, [issue_ids, subscriber_ids])
            delivery_ids = [row[0] for row in cursor.fetchall()]
    elif issue_ids:
        rows = Delivery.objects.filter(issue_id__in=issue_ids, subscriber_id__in=subscriber_ids)
        delivery_ids = list(rows.values_list("id", flat=True))
        rows.delete()
    else:
        delivery_ids = []
    # Who clicked and opened, when the creator kept it per fan: gone with the rows they named.
    LinkClick.objects.filter(delivery_id__in=delivery_ids).delete()
    DeliveryOpen.objects.filter(delivery_id__in=delivery_ids).delete()
    to = Q(pk__in=[])
    for email in Subscriber.objects.filter(pk__in=subscriber_ids).values_list("email", flat=True):
        to |= Q(to__iregex=rf"(^|\n){re.escape(email)}(\r?\n|$)")  # `to`: one address per line
    outbox = OutboxMessage.objects.filter(to)
    if newsletter_ids is not None:
        outbox = outbox.filter(newsletter_id__in=newsletter_ids)
    outbox.delete()
