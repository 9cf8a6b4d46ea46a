"""Outgoing webhooks: written with the change (the outbox), signed (Standard Webhooks), retried, logged.

A receiver on loopback (http.server in a thread) plays the creator's endpoint. Most tests
dispatch and deliver in this process; the first and the Redis one use real Celery processes.
"""

import http.server
import json
import threading
import time
import urllib.parse
import urllib.request
import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from standardwebhooks.webhooks import Webhook

from delivery import engine
from delivery.signals import issue_finished
from newsletters.models import Issue
from subscribers.models import Subscription, SubscriptionEvent
from subscribers.services import signup, subscription_change, subscription_confirm, subscription_unsubscribe
from subscribers.signals import subscribers_erasing, subscriptions_changed
from webhooks import dispatch, events
from webhooks.models import Attempt, Endpoint, EventType, Message

from .beat import celery_beat
from .redis_server import own_redis  # noqa: F401  (fixture)
from .servers import web_server

pytestmark = [pytest.mark.postgres]

WORKER_ENV = {
    "WEBHOOK_ALLOW_PRIVATE_URLS": "true",  # the receiver is on loopback
    "WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "WEBHOOK_RETRY_MAX_SECONDS": "0.5",
    "WEBHOOK_ENDPOINT_CACHE_SECONDS": "0",
}


class Receiver:
    """Answers POSTs from `script` (a status code, or "drop" to close without answering), then 204."""

    def __init__(self):
        self.script, self.requests, lock = [], [], threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with lock:
                    receiver.requests.append((dict(self.headers.items()), body))
                    answer = receiver.script.pop(0) if receiver.script else 204
                if answer == "drop":
                    self.close_connection = True
                    return
                self.send_response(answer)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks?from=oa"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def payloads(self, secret):
        """Every body received, each verified against its headers (raises if a signature is wrong)."""
        return [Webhook(secret).verify(body, headers) for headers, body in self.requests]

    def ids(self):
        return [headers["webhook-id"] for headers, _ in self.requests]


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture(autouse=True)
def fresh_endpoint_list():
    """The per-process list of endpoints must not outlive a test's rolled-back rows."""
    events.forget_endpoints()
    yield
    events.forget_endpoints()


@pytest.fixture
def loopback_ok(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0
    settings.WEBHOOK_RETRY_MAX_SECONDS = 0
    return settings


def endpoint_for(newsletter, url, types=tuple(EventType.values)):
    return Endpoint.objects.create(newsletter=newsletter, url=url, event_types=list(types))


def drain(rounds=10):
    """Dispatch and deliver in this process until nothing is due."""
    for _ in range(rounds):
        ids = dispatch.claim_due()
        if not ids:
            return
        dispatch.deliver(ids)


def wait_for(check, seconds=30):
    deadline = time.monotonic() + seconds
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)
    return result


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_receiver_that_fails_twice_gets_the_event_once_delivered_and_signed(make_creator, receiver, start_worker):
    receiver.script = [500, "drop"]
    _, newsletter = make_creator("zine")
    endpoint = endpoint_for(newsletter, receiver.url)
    with start_worker(queues="default", beat=True, **WORKER_ENV) as worker:
        signup(newsletter=newsletter, email="fan@example.com", name="Fan", source="tiktok")
        message = wait_for(lambda: Message.objects.filter(status="delivered").first())
        time.sleep(2.5)  # a beat later: not sent again
        assert "Traceback" not in worker.log()
    assert len(receiver.requests) == 3 and set(receiver.ids()) == {message.webhook_id}
    payloads = receiver.payloads(endpoint.secret)  # every attempt verifies, the same event each time
    assert [p["type"] for p in payloads] == ["subscriber.created"] * 3
    assert payloads[0]["data"]["email"] == "fan@example.com" and payloads[0]["data"]["newsletter"] == "zine"
    message.refresh_from_db()
    assert message.status == "delivered" and message.attempts == 3 and message.last_status_code == 204
    assert [a.status_code for a in message.attempt_log.all()] == [500, None, 204]
    assert "RemoteDisconnected" in message.attempt_log.all()[1].error


@pytest.mark.django_db
def test_signup_confirm_and_unsubscribe_arrive_in_order(make_creator, receiver, loopback_ok):
    _, newsletter = make_creator("zine")
    endpoint = endpoint_for(newsletter, receiver.url)
    subscription_id, _ = signup(newsletter=newsletter, email="fan@example.com", name="Fan", source="tiktok")
    subscription_confirm(subscription_id=subscription_id)
    subscription_unsubscribe(subscription_id=subscription_id)
    drain()
    payloads = receiver.payloads(endpoint.secret)
    assert [p["type"] for p in payloads] == ["subscriber.created", "subscriber.confirmed", "subscriber.unsubscribed"]
    assert [p["data"]["status"] for p in payloads] == ["pending", "active", "unsubscribed"]
    first = payloads[0]["data"]
    assert {k: first[k] for k in ("email", "name", "newsletter", "tier", "source")} == {
        "email": "fan@example.com", "name": "Fan", "newsletter": "zine", "tier": "free", "source": "tiktok"}
    assert "token" not in json.dumps(payloads) and "/confirm/" not in json.dumps(payloads)
    assert len(set(receiver.ids())) == 3
    assert Message.objects.filter(status="delivered").count() == 3


@pytest.mark.django_db
def test_retries_grow_then_fail_and_a_dead_worker_s_rows_come_back(make_creator, receiver, loopback_ok):
    loopback_ok.WEBHOOK_RETRY_BASE_SECONDS, loopback_ok.WEBHOOK_RETRY_MAX_SECONDS = 30, 3600
    assert [dispatch.retry_delay(n).total_seconds() for n in (1, 2, 3, 8, 20)] == [30, 60, 120, 3600, 3600]
    loopback_ok.WEBHOOK_RETRY_BASE_SECONDS = loopback_ok.WEBHOOK_RETRY_MAX_SECONDS = 0
    loopback_ok.WEBHOOK_RETRY_FOR_SECONDS = 0.5
    receiver.script = [503] * 100
    _, newsletter = make_creator("zine")
    endpoint_for(newsletter, receiver.url)
    signup(newsletter=newsletter, email="fan@example.com")
    drain(rounds=1)  # the first failure starts the clock…
    message = Message.objects.get()
    assert message.status == "pending" and message.retry_until is not None
    time.sleep(0.6)
    drain(rounds=1)  # …and the first failure after it has run out is the last
    message.refresh_from_db()
    assert message.status == "failed" and message.last_status_code == 503 and message.attempt_log.count() == 2
    assert message.attempt_log.last().response == "ok"
    # A worker that died mid-POST: after the lease, the row goes again, with the same webhook-id.
    receiver.script = []
    long_ago = message.created_at - dispatch.sending_lease() * 2
    Message.objects.filter(pk=message.pk).update(status="sending", sending_at=long_ago)
    assert dispatch.recover_stale() == (0, 1)
    drain()
    message.refresh_from_db()
    assert message.status == "delivered" and receiver.ids() == [message.webhook_id] * 3


@pytest.mark.django_db
def test_bounces_complaints_and_tiers_have_their_events(make_creator, subscribe):
    _, newsletter = make_creator("zine")
    endpoint_for(newsletter, "https://hooks.example/in")
    bounced, complained, member = (subscribe(newsletter, f"{n}@example.com") for n in ("b", "c", "m"))
    subscription_change(bounced.id, kind=SubscriptionEvent.Kind.BOUNCE, actor="system", status="bounced")
    subscription_change(complained.id, kind=SubscriptionEvent.Kind.COMPLAINT, actor="system", status="complained")
    subscription_change(member.id, kind=SubscriptionEvent.Kind.TIER, actor="creator", tier="comped")
    subscription_change(member.id, kind=SubscriptionEvent.Kind.TIER, actor="creator", tier="free")
    got = [(m.event_type, m.payload["data"].get("reason")) for m in Message.objects.order_by("id")]
    assert got == [("subscriber.bounced", "bounce"), ("subscriber.bounced", "complaint"),
                   ("member.paid", None), ("member.cancelled", None)]


@pytest.mark.django_db
def test_an_issue_sent_through_the_engine_is_posted_once(ready_issue, receiver, loopback_ok, transport_settings,
                                                         monkeypatch):
    monkeypatch.setattr(engine.chains, "kick", lambda *args, **kwargs: None)  # batches driven here
    transport_settings("discard://")
    issue, _ = ready_issue(n=3)
    endpoint = endpoint_for(issue.newsletter, receiver.url, [EventType.ISSUE_SENT])
    engine.start_send(issue.pk)
    while engine.send_next_batch(issue.pk, "w1")[0] == "again":
        pass
    issue.refresh_from_db()
    assert issue.status == "sent"
    drain()
    [payload] = receiver.payloads(endpoint.secret)
    assert payload["type"] == "issue.sent" and payload["data"]["counts"] == {"sent": 3}
    assert payload["data"]["issue_id"] == issue.pk and payload["data"]["url"].endswith("/issue-one/")
    assert receiver.ids() == [f"msg_issue_{issue.pk}_sent"]
    # The send closes again after late truth reopened it: the same event, not a second one.
    issue_finished.send(Issue, issue_id=issue.pk, status="sent", counts={"sent": 3})
    drain()
    assert Message.objects.count() == 1 and len(receiver.requests) == 1


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_an_event_written_while_redis_is_down_goes_out_once_it_is_back(
    make_creator, receiver, start_worker, own_redis, database_url, tmp_path,  # noqa: F811
):
    _, newsletter = make_creator("zine")
    endpoint_for(newsletter, receiver.url)
    env = {"DATABASE_URL": database_url, "REDIS_URL": own_redis.url, **WORKER_ENV,
           "RATE_LIMIT_KEY_PREFIX": f"test-rl:{uuid.uuid4().hex}"}
    with (
        web_server(**env) as base,
        start_worker(queues="default", redis_url=own_redis.url, **WORKER_ENV),
        celery_beat(tmp_path, **env),
    ):
        assert post_signup(base, "before@example.com") < 5  # up: the path works end to end
        wait_for(lambda: len(receiver.requests) == 1)

        own_redis.stop()
        assert post_signup(base, "during@example.com") < 2  # the signup does not wait for the broker
        message = Message.objects.get(payload__data__email="during@example.com")  # written with the signup
        time.sleep(3)
        message.refresh_from_db()
        assert message.status == "pending" and len(receiver.requests) == 1

        own_redis.start()  # same port: the worker and beat reconnect on their own
        wait_for(lambda: Message.objects.filter(status="delivered").count() == 2, 60)
        time.sleep(2.5)
    assert receiver.ids()[1:] == [message.webhook_id]  # once
    assert json.loads(receiver.requests[1][1])["data"]["email"] == "during@example.com"


def post_signup(base, email):
    """POST the signup form to the web process; returns the seconds it took (the answer must be 200)."""
    body = urllib.parse.urlencode({"email": email, "form": "page"}).encode()
    started = time.monotonic()
    request = urllib.request.Request(f"{base}/zine/subscribe", data=body, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    return time.monotonic() - started


def admin_url(obj, view="change"):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_{view}", args=[obj.pk])


@pytest.mark.django_db
def test_a_creator_sees_only_their_own_endpoints_and_messages(make_creator, client):
    alice, alice_news = make_creator("alice-news", "alice@example.com")
    _, bob_news = make_creator("bob-news", "bob@example.com")
    mine = endpoint_for(alice_news, "https://alice.example/hook")
    theirs = endpoint_for(bob_news, "https://bob-secret.example/hook")
    for news, email in ((alice_news, "ann@example.com"), (bob_news, "bert@example.com")):
        signup(newsletter=news, email=email)
    client.force_login(alice)
    endpoints = client.get(reverse("admin:webhooks_endpoint_changelist")).content.decode()
    assert "alice.example" in endpoints and "bob-secret" not in endpoints
    page = client.get(admin_url(mine)).content.decode()
    assert mine.secret in page and "webhook-signature" in page
    assert client.get(admin_url(theirs)).status_code == 404
    log = client.get(reverse("admin:webhooks_message_changelist") + "?status__exact=pending").content.decode()
    my_message, their_message = Message.objects.get(endpoint=mine), Message.objects.get(endpoint=theirs)
    assert my_message.webhook_id in log and their_message.webhook_id not in log
    assert "ann@example.com" in client.get(admin_url(my_message)).content.decode()
    assert client.get(admin_url(their_message)).status_code == 404
    # An action posted with the other creator's id changes nothing.
    client.post(reverse("admin:webhooks_message_changelist"), {"action": "send_again",
                                                               "_selected_action": [their_message.pk]})
    Message.objects.filter(pk=their_message.pk).update(status="failed")
    client.post(reverse("admin:webhooks_message_changelist"), {"action": "send_again",
                                                               "_selected_action": [their_message.pk]})
    assert Message.objects.get(pk=their_message.pk).status == "failed"


@pytest.mark.django_db
def test_send_again_redelivers_with_the_same_id(make_creator, receiver, loopback_ok, client):
    alice, newsletter = make_creator("zine")
    endpoint = endpoint_for(newsletter, receiver.url)
    signup(newsletter=newsletter, email="fan@example.com")
    drain()
    message = Message.objects.get(status="delivered")
    client.force_login(alice)
    response = client.post(reverse("admin:webhooks_message_changelist"),
                           {"action": "send_again", "_selected_action": [message.pk]}, follow=True)
    assert "Sending 1 webhooks again" in response.content.decode()
    message.refresh_from_db()
    assert message.status == "pending" and message.attempts == 0
    drain()
    message.refresh_from_db()
    assert message.status == "delivered" and message.attempt_log.count() == 2
    assert receiver.ids() == [message.webhook_id] * 2
    assert len(receiver.payloads(endpoint.secret)) == 2


@pytest.mark.django_db
def test_erasure_deletes_the_messages_and_their_attempts(make_creator, receiver, loopback_ok):
    _, newsletter = make_creator("zine")
    _, other = make_creator("other")
    endpoint_for(newsletter, receiver.url)
    endpoint_for(other, receiver.url)
    for email in ("gone@example.com", "stays@example.com"):
        signup(newsletter=newsletter, email=email)
        signup(newsletter=other, email=email)
    drain()
    gone = Subscription.objects.filter(subscriber__email="gone@example.com").values_list("subscriber_id", flat=True)[0]
    assert Attempt.objects.filter(message__subscriber_id=gone).count() == 2
    subscribers_erasing.send(Subscription, subscriber_ids=[gone], newsletter_ids=[other.pk])
    assert list(Message.objects.filter(subscriber_id=gone).values_list("endpoint__newsletter", flat=True)) == [
        newsletter.pk]
    subscribers_erasing.send(Subscription, subscriber_ids=[gone], newsletter_ids=None)
    assert not Message.objects.filter(subscriber_id=gone).exists()
    assert not Attempt.objects.filter(message__subscriber_id=gone).exists()
    assert "gone@example.com" not in json.dumps(list(Message.objects.values_list("payload", flat=True)))
    assert Message.objects.filter(status="delivered").count() == 2 and Attempt.objects.count() == 2


@pytest.mark.django_db
def test_a_private_url_is_refused_when_saved_and_when_sent(make_creator, receiver, client, settings):
    alice, newsletter = make_creator("zine")
    for url in ("http://127.0.0.1:8000/x", "http://localhost/x", "http://169.254.169.254/latest/meta-data",
                "http://10.1.2.3/x", "http://[::1]/x", "http://[::ffff:127.0.0.1]/x", "ftp://example.org/x"):
        with pytest.raises(ValidationError) as refused:
            Endpoint(newsletter=newsletter, url=url, event_types=["issue.sent"]).full_clean()
        assert "url" in refused.value.message_dict, url
    client.force_login(alice)
    add_page = client.get(reverse("admin:webhooks_endpoint_add")).content.decode()
    assert add_page.count('type="checkbox" name="event_types"') == len(EventType.values)
    form = {"newsletter": newsletter.pk, "url": receiver.url, "description": "", "event_types": ["issue.sent"],
            "active": "on"}
    response = client.post(reverse("admin:webhooks_endpoint_add"), form)
    assert response.status_code == 200 and "loopback, private or link-local" in response.content.decode()
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    assert client.post(reverse("admin:webhooks_endpoint_add"), form).status_code == 302
    endpoint = Endpoint.objects.get()
    assert endpoint.event_types == ["issue.sent"] and endpoint.secret.startswith("whsec_")
    # Saved while allowed, sent after the rule is back: refused at the connection, for good.
    endpoint.event_types = list(EventType.values)
    endpoint.save()
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    signup(newsletter=newsletter, email="fan@example.com")
    drain()
    message = Message.objects.get()
    assert message.status == "failed" and "private" in message.last_error and not receiver.requests


@pytest.mark.django_db
def test_with_no_endpoint_a_signup_writes_nothing_and_costs_no_query(make_creator):
    _, newsletter = make_creator("zine")
    events.active_endpoints()  # this process's list of endpoints is fresh: none

    def signup_queries(email):
        with CaptureQueriesContext(connection) as queries:
            signup(newsletter=newsletter, email=email)
        return [query["sql"] for query in queries]

    with_receiver = signup_queries("one@example.com")
    subscriptions_changed.disconnect(dispatch_uid="webhooks.subscriptions")
    try:
        without = signup_queries("two@example.com")
    finally:
        subscriptions_changed.connect(events.on_subscriptions_changed, dispatch_uid="webhooks.subscriptions")
    assert len(with_receiver) == len(without) and not any("webhooks_" in sql for sql in with_receiver)

    # An endpoint of another newsletter: one SELECT finds it is not this one's; nothing is written.
    _, other = make_creator("other")
    endpoint_for(other, "https://hooks.example/in")
    events.active_endpoints()
    some = signup_queries("three@example.com")
    assert len(some) == len(without) + 1 and not any("INSERT" in sql and "webhooks_" in sql for sql in some)
    assert not Message.objects.exists()
