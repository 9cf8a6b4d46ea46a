"""Amazon SES v2 through boto3: against moto_server on loopback, and a stand-in that throttles."""

import json
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from delivery import engine
from delivery.models import Delivery

from .servers import moto_server_running

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def aws_env(monkeypatch, settings):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    def point_at(url):
        monkeypatch.setenv("AWS_ENDPOINT_URL_SES", url)  # for worker processes started by the test
        settings.AWS_ENDPOINT_URL_SES = url

    return point_at


@pytest.fixture
def moto_server(aws_env):
    with moto_server_running() as url:
        aws_env(url)
        yield url


def test_a_send_through_ses_arrives_whole_at_moto(moto_server, ready_issue, transport_settings, monkeypatch):
    monkeypatch.setattr(engine.chains, "kick", lambda *a, **k: None)
    transport_settings("ses://us-east-1", SEND_RATE=1000)
    issue, subscriptions = ready_issue(n=6)
    boto3.client("sesv2", region_name="us-east-1", endpoint_url=moto_server).create_email_identity(
        EmailIdentity="sender.example"
    )
    engine.start_send(issue.pk)
    while engine.send_next_batch(issue.pk, "w")[0] == "again":
        pass

    rows = Delivery.objects.filter(issue=issue)
    assert set(rows.values_list("status", flat=True)) == {"sent"}
    raw_messages = _raw_messages(json.load(urllib.request.urlopen(f"{moto_server}/moto-api/data.json")))
    assert len(raw_messages) == 6
    for subscription in subscriptions:
        [raw] = [m for m in raw_messages if f"To: {subscription.subscriber.email}" in m]
        assert "List-Unsubscribe: <http" in raw and "mailto:" in raw
        assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
        assert "Content-Type: text/plain" in raw and "Content-Type: text/html" in raw
    # The provider's ids are kept on the rows.
    assert all(len(mid) > 10 and not mid.startswith("<oa.") for mid in rows.values_list("message_id", flat=True))


def _raw_messages(data):
    """Every raw message moto stored, wherever its version keeps them."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "raw_data" in node:
                found.append(node["raw_data"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data.get("ses", data))
    return found


class ThrottlingSES(BaseHTTPRequestHandler):
    """Answers SendEmail like SES does when the account's rate is exceeded, for the first few calls."""

    throttle_first = 4
    calls = 0
    throttled = 0
    accepted = []
    lock = threading.Lock()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            type(self).calls += 1
            throttle = type(self).calls <= self.throttle_first
            if throttle:
                type(self).throttled += 1
            else:
                self.accepted.append(body["Destination"]["ToAddresses"][0])
        if throttle:
            payload = json.dumps({"message": "Maximum sending rate exceeded."}).encode()
            self.send_response(429)
            self.send_header("x-amzn-ErrorType", "TooManyRequestsException")
        else:
            payload = json.dumps({"MessageId": f"ses-{uuid.uuid4()}"}).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_throttled_calls_are_retried_and_nothing_is_lost(aws_env, ready_issue, transport_settings, monkeypatch):
    monkeypatch.setattr(engine.chains, "kick", lambda *a, **k: None)
    ThrottlingSES.calls, ThrottlingSES.throttled, ThrottlingSES.accepted = 0, 0, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ThrottlingSES)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    aws_env(f"http://127.0.0.1:{server.server_port}")
    transport_settings("ses://us-east-1", SEND_RATE=1000, SEND_RETRY_BASE_SECONDS=0.05, SEND_RETRY_MAX_SECONDS=0.2)
    try:
        issue, subscriptions = ready_issue(n=8)
        engine.start_send(issue.pk)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            step, wait = engine.send_next_batch(issue.pk, "w")
            if step == "done":
                break
            time.sleep(wait)
    finally:
        server.shutdown()
    assert ThrottlingSES.throttled == 4
    assert sorted(ThrottlingSES.accepted) == sorted(s.subscriber.email for s in subscriptions)
    assert set(Delivery.objects.filter(issue=issue).values_list("status", flat=True)) == {"sent"}
