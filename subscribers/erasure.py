"""Erasure ("delete my data"): a person is forgotten everywhere, or by one creator's lists.

One transaction: the apps above delete their rows on subscribers_erasing, sent first so what they
look up still exists; then the subscriptions, with their events and owed emails; then, once no
list holds the person, their row. What stays is a digest of the address, when
settings.ERASURE_KEEP_DIGEST says the law allows that suppression hash, so that an import or a
creator does not bring them back; the person may still sign up again themselves.
"""

import logging

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

from .addresses import erased_digest
from .models import ErasedAddress, Subscriber, Subscription, Suppression
from .signals import subscribers_erasing

logger = logging.getLogger(__name__)


def erase_subscriber(subscriber_id, *, newsletter_ids=None, actor, actor_user=None):
    """Forget a person: everywhere (newsletter_ids None, the fan's own request) or from these newsletters
    (a creator's, who may not erase them from another creator's list). Returns the subscriptions removed.

    When no subscription is left, the person's row goes, and with it everything pointing at it in
    every app (rows of a subscription deleted earlier, which no list holds any more).
    """
    with transaction.atomic():
        subscriber = Subscriber.objects.select_for_update().filter(pk=subscriber_id).first()
        if subscriber is None:
            return 0
        subscriptions = Subscription.objects.filter(subscriber_id=subscriber_id)
        kept = False
        if newsletter_ids is not None:
            newsletter_ids = list(newsletter_ids)
            kept = subscriptions.exclude(newsletter_id__in=newsletter_ids).exists()
            subscriptions = subscriptions.filter(newsletter_id__in=newsletter_ids)
        removed_from = sorted(set(subscriptions.values_list("newsletter_id", flat=True)))
        if newsletter_ids is not None and not removed_from:
            return 0  # not on these lists: nothing of theirs here to erase
        subscribers_erasing.send(Subscriber, subscriber_ids=[subscriber_id],
                                 newsletter_ids=removed_from if kept else None)
        _forget_admin_history(Subscription, subscriptions.values_list("id", flat=True))
        removed = subscriptions.delete()[1].get(Subscription._meta.label, 0)
        if not kept:
            _forget_admin_history(Subscriber, [subscriber_id])
            _delete_subscriber_row(subscriber_id)
        if newsletter_ids is None:  # the plain address of a bounce or complaint: the digest replaces it
            Suppression.objects.alias(email_lower=Lower("email")).filter(email_lower=subscriber.email.lower()).delete()
        if settings.ERASURE_KEEP_DIGEST:
            _keep_digest(subscriber.email, None if newsletter_ids is None else removed_from)
    logger.info("erasure by %s (user %s): %d subscriptions, %s", actor, getattr(actor_user, "pk", None), removed,
                "everywhere" if newsletter_ids is None else f"newsletters {removed_from}")
    return removed


def _forget_admin_history(model, ids):
    """The admin's history names the object (an address) in clear: those entries go too."""
    LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(model), object_id__in=[str(pk) for pk in ids]
    ).delete()


def _delete_subscriber_row(subscriber_id):
    """By hand, not Subscriber.delete(): Django's cascade would look for the person's ledger rows by
    subscriber, a scan of a table kept without that index on purpose (the delivery app deleted them
    on subscribers_erasing, through its unique index)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {connection.ops.quote_name(Subscriber._meta.db_table)} WHERE id = %s",
                       [subscriber_id])


def _keep_digest(email, newsletter_ids):
    digest = erased_digest(email)
    ErasedAddress.objects.bulk_create(
        [ErasedAddress(digest=digest, newsletter_id=pk) for pk in (newsletter_ids or [None])],
        ignore_conflicts=True,
    )


def is_erased(email, newsletter_id):
    """Whether this address asked to be forgotten by this newsletter or by all: importers leave it out."""
    return ErasedAddress.objects.filter(
        Q(newsletter__isnull=True) | Q(newsletter_id=newsletter_id), digest=erased_digest(email)
    ).exists()


def refuse_erased(email, newsletter_id):
    """A creator may not add back by hand someone who asked to be forgotten (signing up again is theirs)."""
    if is_erased(email, newsletter_id):
        raise ValidationError(
            _("This address asked to be forgotten here, so it cannot be added by hand; the person can still "
              "sign up again themselves."),
            code="erased",
        )
