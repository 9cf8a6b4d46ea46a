"""A best-effort shortcut past the beat's one-second tick: after a write that owes an email,
ask a worker to dispatch now.

The dispatcher lives in the delivery app, above this one, so the task is named, not imported
(its name is the one the beat uses too).
"""

import logging
import time

from celery import current_app
from django.db import transaction

log = logging.getLogger(__name__)

DISPATCH_TASK = "subscribers.tasks.dispatch_owed_emails"
NUDGE_INTERVAL = 0.5  # seconds between two nudges from one web process
NUDGE_PAUSE_AFTER_FAILURE = 5.0

_last_nudge = 0.0
_nudges_paused_until = 0.0


def nudge():
    """Ask a worker to dispatch now. Never raises; skipped if one was sent a moment ago or the broker is away."""
    global _last_nudge, _nudges_paused_until
    now = time.monotonic()
    if now - _last_nudge < NUDGE_INTERVAL or now < _nudges_paused_until:
        return
    _last_nudge = now
    try:
        current_app.send_task(DISPATCH_TASK, retry=False, expires=30)
    except Exception as error:
        _nudges_paused_until = time.monotonic() + NUDGE_PAUSE_AFTER_FAILURE
        log.warning("dispatch nudge skipped, the beat will pick the email up: %s", error)


def nudge_after_commit():
    transaction.on_commit(nudge)
