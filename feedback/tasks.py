"""Celery tasks of the feedback app."""

import logging

from celery import shared_task
from django.conf import settings

log = logging.getLogger(__name__)


@shared_task(ignore_result=True, name="feedback.tasks.read_bounce_mailbox")
def read_bounce_mailbox():
    """One pass over BOUNCE_IMAP_URL (beat runs it every minute when the setting is set)."""
    if not settings.BOUNCE_IMAP_URL:
        return None
    from .mailbox import read

    counts = read()
    if counts and (counts["applied"] or counts["replayed"]):
        log.info("Bounce mailbox: %s", counts)
    return counts
