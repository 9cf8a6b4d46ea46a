"""Celery tasks of a send: short, by id, and thin; the work is in the engine.

Their names are those they had before the delivery app existed (newsletters.tasks.*): messages
already waiting in a broker name them, and so does the beat.
"""

import logging

from celery import shared_task

from . import engine

log = logging.getLogger(__name__)


@shared_task(bind=True, ignore_result=True, name="newsletters.tasks.send_batch")
def send_batch(self, issue_id):
    """One batch of one issue, then ask for the next; a lost or doubled task sends nothing twice."""
    engine.chain_alive(issue_id)
    step, delay = engine.send_next_batch(issue_id, worker=self.request.hostname or "worker")
    try:
        if step == "again":
            engine.chain_alive(issue_id)
            send_batch.delay(issue_id)
        elif step == "later":
            engine.chain_alive(issue_id, delay + engine.heartbeat_seconds())
            send_batch.apply_async((issue_id,), countdown=delay)
    except Exception as error:  # broker unreachable: the watchdog picks the issue up again
        log.warning("could not queue the next batch of issue %s: %s", issue_id, error)


@shared_task(ignore_result=True, name="newsletters.tasks.send_watchdog")
def send_watchdog():
    engine.watchdog()


@shared_task(ignore_result=True, name="newsletters.tasks.send_scheduled_issues")
def send_scheduled_issues():
    engine.start_due_scheduled()


@shared_task(bind=True, ignore_result=True, max_retries=6, default_retry_delay=60,
             name="delivery.tasks.tell_owners_paused")
def tell_owners_paused(self, issue_id):
    """An email to the newsletter's owners: the send stopped itself, why, and where to resume it.
    Through the transactional mailer; a relay's "not now" is tried again a few times."""
    from .notices import send_pause_notice

    try:
        send_pause_notice(issue_id)
    except Exception as error:
        if getattr(error, "outcome", None) in ("retry", "throttled"):
            raise self.retry(exc=error) from error
        raise
