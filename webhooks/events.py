"""What the audience and the send engine tell us, written as outbox rows in their transaction.

The signup hot path sends `subscriptions_changed` on every signup. While no endpoint is
active anywhere it costs nothing: each process keeps the list of active endpoints for
WEBHOOK_ENDPOINT_CACHE_SECONDS (one cheap SELECT when it runs out; a save in this process
clears it). With endpoints on other newsletters, one SELECT finds that none is this one's.
An endpoint saved in another process starts receiving subscriber events within that time.
"""

import contextlib
import logging
import threading
import time
import uuid

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from newsletters.models import Issue
from ownedaudience import links
from subscribers.models import Subscription, SubscriptionEvent

from .models import Endpoint, EventType, Message

log = logging.getLogger(__name__)

Kind, Tier = SubscriptionEvent.Kind, Subscription.Tier
CHUNK = 5000  # subscriptions looked up per query (a bulk change can touch many)

_endpoints = {"at": float("-inf"), "by_newsletter": {}}


def active_endpoints():
    """{newsletter_id: [(endpoint_id, event types)]} of the active endpoints, cached per process."""
    now = time.monotonic()
    if now - _endpoints["at"] >= settings.WEBHOOK_ENDPOINT_CACHE_SECONDS:
        by_newsletter = {}
        for pk, newsletter_id, types in Endpoint.objects.filter(active=True).values_list(
            "id", "newsletter_id", "event_types"
        ):
            by_newsletter.setdefault(newsletter_id, []).append((pk, frozenset(types or ())))
        _endpoints.update(at=now, by_newsletter=by_newsletter)
    return _endpoints["by_newsletter"]


def forget_endpoints(**kwargs):
    _endpoints["at"] = float("-inf")


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def event_for(change):
    """(event type, extra data) for one subscribers.signals.Change, or None."""
    if change.kind in (Kind.SIGNUP, Kind.INVITE, Kind.IMPORT):
        return (EventType.SUBSCRIBER_CREATED, {}) if not change.from_status else None
    if change.kind == Kind.CONFIRM or (change.kind == Kind.REJOIN and change.to_status == Subscription.Status.ACTIVE):
        return EventType.SUBSCRIBER_CONFIRMED, {}
    if change.kind == Kind.UNSUBSCRIBE:
        return EventType.SUBSCRIBER_UNSUBSCRIBED, {}
    if change.kind in (Kind.BOUNCE, Kind.COMPLAINT):
        return EventType.SUBSCRIBER_BOUNCED, {"reason": change.kind}
    if change.kind == Kind.TIER:
        was_member, is_member = change.from_tier in Tier.MEMBERS, change.to_tier in Tier.MEMBERS
        if is_member and not was_member:
            return EventType.MEMBER_PAID, {"previous_tier": change.from_tier}
        if was_member and not is_member:
            return EventType.MEMBER_CANCELLED, {"previous_tier": change.from_tier}
    return None


def on_subscriptions_changed(sender, changes, **kwargs):
    endpoints = active_endpoints()
    if not endpoints:
        return
    events = {}
    for change in changes:
        event = event_for(change)
        if event is not None:
            events.setdefault(change.subscription_id, []).append((change, *event))
    ids = list(events)
    now = timezone.now()
    messages = []
    for start in range(0, len(ids), CHUNK):
        rows = Subscription.objects.filter(id__in=ids[start:start + CHUNK], newsletter_id__in=list(endpoints)).values(
            "id", "newsletter_id", "newsletter__slug", "subscriber_id", "subscriber__email", "subscriber__name",
            "source",
        )
        for row in rows:
            for change, event_type, extra in events[row["id"]]:
                data = {
                    "subscription_id": row["id"], "email": row["subscriber__email"], "name": row["subscriber__name"],
                    "newsletter": row["newsletter__slug"], "status": change.to_status, "tier": change.to_tier,
                    "source": row["source"], "at": iso(now), **extra,
                }
                messages += _messages(endpoints[row["newsletter_id"]], event_type, f"msg_{uuid.uuid4().hex}",
                                      data, now, subscriber_id=row["subscriber_id"])
    _write(messages)


def on_issue_finished(sender, issue_id, status, counts, **kwargs):
    """issue.sent, once per (issue, outcome): a send that closes again after a reopen keeps its id."""
    endpoints = [(pk, frozenset(types or ())) for pk, types in Endpoint.objects.filter(
        newsletter__issues__pk=issue_id, active=True).values_list("id", "event_types")]
    if not any(EventType.ISSUE_SENT in types for _, types in endpoints):
        return
    issue = Issue.objects.select_related("newsletter").get(pk=issue_id)
    now = timezone.now()
    data = {
        "issue_id": issue.pk, "title": issue.title, "slug": issue.slug, "newsletter": issue.newsletter.slug,
        "status": status, "counts": dict(counts), "sent_at": iso(issue.sent_at or now),
    }
    if issue.show_on_web:
        data["url"] = links.issue(issue)
    _write(_messages(endpoints, EventType.ISSUE_SENT, f"msg_issue_{issue_id}_{status}", data, now))


def on_subscribers_erasing(sender, subscriber_ids, newsletter_ids=None, **kwargs):
    """Erasure leaves nothing of these people here: their messages go, with their attempt logs."""
    messages = Message.objects.filter(subscriber_id__in=list(subscriber_ids))
    if newsletter_ids is not None:
        messages = messages.filter(endpoint__newsletter_id__in=list(newsletter_ids))
    messages.delete()


def _messages(endpoints, event_type, webhook_id, data, now, subscriber_id=None):
    payload = {"type": event_type, "timestamp": iso(now), "data": data}
    return [
        Message(endpoint_id=pk, webhook_id=webhook_id, event_type=event_type, payload=payload,
                subscriber_id=subscriber_id, next_attempt_at=now, created_at=now)
        for pk, types in endpoints if event_type in types
    ]


def _write(messages):
    if messages:
        # A repeated (endpoint, webhook id), the same issue closing twice, is not written again.
        Message.objects.bulk_create(messages, batch_size=1000, ignore_conflicts=True)
        nudge_after_commit()


# --- the nudge: a webhook goes out within a second, not at the next beat -------------------------

DISPATCH_TASK = "webhooks.tasks.dispatch_webhooks"
NUDGE_INTERVAL = 0.5  # seconds between two nudges from one process
NUDGE_PAUSE_AFTER_FAILURE = 5.0
_nudge = {"last": float("-inf"), "paused_until": float("-inf"), "busy": False, "producer": None}
_nudge_lock = threading.Lock()


def nudge():
    """Ask a worker to dispatch now, from a thread of its own and on a broker connection of its own:
    with the broker away a publish waits for its connection timeout (seconds), and a signup must not,
    nor may it find the shared producer pool's connection taken. Never raises; skipped while one is
    on its way, when one went a moment ago, or for a while after the broker did not answer."""
    now = time.monotonic()
    with _nudge_lock:
        if _nudge["busy"] or now - _nudge["last"] < NUDGE_INTERVAL or now < _nudge["paused_until"]:
            return
        _nudge.update(last=now, busy=True)
    threading.Thread(target=_publish_nudge, name="webhooks-nudge", daemon=True).start()


def _publish_nudge():
    try:
        if _nudge["producer"] is None:
            _nudge["producer"] = current_app.amqp.Producer(current_app.connection_for_write())
        current_app.send_task(DISPATCH_TASK, retry=False, expires=30, producer=_nudge["producer"])
    except Exception as error:  # noqa: BLE001  (whatever the broker raises, the beat picks the rows up)
        producer, _nudge["producer"] = _nudge["producer"], None
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.connection.close()
        _nudge["paused_until"] = time.monotonic() + NUDGE_PAUSE_AFTER_FAILURE
        log.warning("webhook dispatch nudge skipped, the beat will pick the rows up: %s", error)
    finally:
        _nudge["busy"] = False


def nudge_after_commit():
    transaction.on_commit(nudge)
