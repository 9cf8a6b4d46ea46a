"""/healthz tells a load balancer and an operator whether the database and the broker answer."""

import json

import pytest
from django.conf import settings

from .servers import get, web_server

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.mark.django_db
def test_healthy_when_database_and_redis_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "failed": [], "database": "ok", "broker": "ok"}


def test_503_naming_the_database_when_postgres_is_unreachable():
    with web_server(DATABASE_URL="postgres://postgres@127.0.0.1:1/nowhere", REDIS_URL=settings.REDIS_URL) as base:
        status, body = get(f"{base}/healthz")
    assert status == 503
    assert json.loads(body)["failed"] == ["database"]


def test_503_naming_the_broker_when_redis_is_unreachable(database_url):
    with web_server(DATABASE_URL=database_url, REDIS_URL="redis://127.0.0.1:1/0") as base:
        status, body = get(f"{base}/healthz")
    assert status == 503
    assert json.loads(body)["failed"] == ["broker"]


def test_200_from_a_served_process_with_both_up(database_url):
    with web_server(DATABASE_URL=database_url, REDIS_URL=settings.REDIS_URL) as base:
        status, body = get(f"{base}/healthz")
    assert status == 200, body
