"""The chains of batches that work on a send: asking workers to start one (kick), and the
heartbeat in the cache by which the watchdog knows a chain is still alive."""

import logging

from django.conf import settings
from django.core.cache import cache

log = logging.getLogger(__name__)


def kick(issue_id, chains=1):
    """Ask workers to work on an issue; a broker that is down is not fatal (the watchdog asks again)."""
    from .tasks import send_batch

    for _ in range(chains):
        try:
            send_batch.delay(issue_id)
        except Exception as error:  # the broker is unreachable; beat's watchdog will kick again
            log.warning("could not queue a batch of issue %s: %s", issue_id, error)
            return


def _chain_key(issue_id):
    return f"ownedaudience:send-chain:{issue_id}"


def heartbeat_seconds():
    return 2 * settings.SEND_BATCH_SECONDS + 2 * settings.SEND_WATCHDOG_SECONDS


def chain_alive(issue_id, seconds=None):
    """A chain of batches reports in; the watchdog leaves the issue alone while one does."""
    try:
        cache.set(_chain_key(issue_id), 1, timeout=seconds or heartbeat_seconds())
    except Exception as error:  # the cache is down: the watchdog may add a chain, which is harmless
        log.warning("could not record a heartbeat for issue %s: %s", issue_id, error)


def chain_seen(issue_id):
    try:
        return cache.get(_chain_key(issue_id)) is not None
    except Exception:
        return False
