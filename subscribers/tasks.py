"""Celery tasks for the audience; thin: the work is in subscribers.dispatch.

Routed to the `transactional` queue (CELERY_TASK_ROUTES), so a big send never delays them.
"""

from celery import shared_task

from . import dispatch


@shared_task(ignore_result=True)
def dispatch_owed_emails():
    return dispatch.dispatch_due()


@shared_task(ignore_result=True)
def send_owed_emails(ids):
    return dispatch.send_owed(ids)
