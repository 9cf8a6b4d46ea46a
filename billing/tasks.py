"""Billing's periodic work: comps that reached their end date."""

from celery import shared_task

from . import services


@shared_task(name="billing.tasks.expire_comps")
def expire_comps():
    return services.comps_expire()
