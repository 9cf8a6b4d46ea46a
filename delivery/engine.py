"""The send engine, by job, behind one name: `from delivery import engine`.

- starting.py: the checks, renditions, the snapshot of the audience, scheduling;
- batches.py: claim, hand over, record, finish (the hot path);
- chains.py: kicking chains of batches off, and their heartbeat;
- watchdog.py: leases that ran out, dead workers, stopped chains, sends that are done;
- actions.py: progress counts and what the creator does (retry, unknown rows, a test copy).

Invariants (ARCHITECTURE.md has the whole list, with the state machines of a row and an issue):
- start_send() freezes the audience in one INSERT ... SELECT; (issue, subscriber) is unique.
- A worker claims rows with a conditional update and a lease; only rows it moved from claimed
  to sending under its own claim token are handed to the transport, a group at a time.
- Transient errors put rows back to pending with a growing delay, throttling pauses the send;
  a lease that runs out turns claimed rows back to pending and sending rows to unknown.
- Markdown is rendered once per issue and audience, into Rendition rows; workers only
  personalize the prepared bytes.
"""

from . import chains
from .actions import resolve_unknown, retry_failed, send_test
from .batches import (
    IN_PROGRESS,
    Batch,
    _prepared,
    batch_size,
    build,
    claim,
    fail_unbuildable,
    finish,
    lease_end,
    next_step,
    prepared,
    recipients,
    record,
    release,
    reopen,
    retry_delay,
    retry_later,
    send_next_batch,
    write,
)
from .chains import _chain_key, chain_alive, chain_seen, heartbeat_seconds, kick
from .pausing import pause, resume
from .progress import progress
from .starting import (
    WEB,
    IssueNotReady,
    SendFailed,
    audience_variants,
    render_renditions,
    schedule_send,
    snapshot,
    start_due_scheduled,
    start_send,
)
from .watchdog import recover_expired_leases, watchdog

__all__ = [
    "IN_PROGRESS", "WEB", "Batch", "IssueNotReady", "SendFailed", "_chain_key", "_prepared", "audience_variants",
    "batch_size", "build", "chain_alive", "chain_seen", "chains", "claim", "fail_unbuildable", "finish",
    "heartbeat_seconds", "kick", "lease_end", "next_step", "pause", "prepared", "progress", "record", "recipients",
    "recover_expired_leases", "release", "render_renditions", "reopen", "resolve_unknown", "resume", "retry_delay",
    "retry_failed", "retry_later", "schedule_send", "send_next_batch", "send_test", "snapshot",
    "start_due_scheduled", "start_send", "watchdog", "write",
]
