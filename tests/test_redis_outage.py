"""A signup made while Redis is down is kept, the fan sees success, and the confirmation goes out later."""

import json
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from subscribers.models import OwedEmail, Subscription

from .beat import celery_beat
from .redis_server import own_redis  # noqa: F401  (fixture)
from .servers import web_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]


def post_signup(base, email):
    body = urllib.parse.urlencode({"email": email, "form": "page"}).encode()
    request = urllib.request.Request(
        f"{base}/zine/subscribe", data=body, headers={"Accept": "application/json"}
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.status, json.loads(response.read()), time.monotonic() - started


def test_a_signup_while_redis_is_down_is_kept_and_confirmed_once_redis_is_back(
    make_creator,
    database_url,
    smtp_sink,
    start_worker,
    own_redis,  # noqa: F811  (the fixture imported above)
    tmp_path,
):
    make_creator("zine")
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": own_redis.url,
        "EMAIL_URL": smtp_sink.url,
        "RATE_LIMIT_KEY_PREFIX": f"test-rl:{uuid.uuid4().hex}",
    }
    with (
        web_server(**env) as base,
        start_worker(queues="transactional", redis_url=own_redis.url, EMAIL_URL=smtp_sink.url, SITE_URL=base),
        celery_beat(tmp_path, **env, SITE_URL=base),
    ):
        # Up: the path works end to end.
        assert post_signup(base, "before@example.com")[0] == 200
        deadline = time.monotonic() + 30
        while not smtp_sink.to("before@example.com") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert smtp_sink.to("before@example.com")

        own_redis.stop()
        status, answer, seconds = post_signup(base, "during@example.com")
        assert status == 200 and answer["ok"] is True  # the fan sees success…
        assert seconds < 2, f"the signup took {seconds:.1f}s with Redis down"
        during = Subscription.objects.get(subscriber__email="during@example.com")
        assert during.status == "pending"  # …the signup is kept…
        assert OwedEmail.objects.get(subscription=during).status == "pending"  # …and so is the email it owes.
        time.sleep(2)
        assert not smtp_sink.to("during@example.com")

        own_redis.start()  # same port: the worker and beat reconnect on their own
        deadline = time.monotonic() + 60
        while not smtp_sink.to("during@example.com") and time.monotonic() < deadline:
            time.sleep(0.25)
        messages = smtp_sink.to("during@example.com")
        assert len(messages) == 1, (tmp_path / "beat.log").read_text(errors="replace")[-3000:]
        assert "/confirm/" in messages[0].message.get_body(("plain",)).get_content()
        time.sleep(2)  # later dispatch rounds do not send it again
        assert len(smtp_sink.to("during@example.com")) == 1
        assert OwedEmail.objects.get(subscription=during).status == "sent"
