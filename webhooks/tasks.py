"""Celery tasks of the outgoing webhooks; thin: the work is in webhooks.dispatch (queue "default")."""

from celery import shared_task

from . import dispatch


@shared_task(ignore_result=True)
def dispatch_webhooks():
    return dispatch.dispatch_due()


@shared_task(ignore_result=True)
def deliver_webhooks(ids):
    return dispatch.deliver(ids)
