import os

import pytest
from django.conf import settings

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _require(available, what):
    if available:
        return
    reason = f"{what} is not reachable (set DATABASE_URL / REDIS_URL)"
    if CI:
        pytest.fail(f"CI needs every service: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item):
    if item.get_closest_marker("postgres"):
        _require(settings.POSTGRES_AVAILABLE, "PostgreSQL")
    if item.get_closest_marker("redis"):
        _require(settings.REDIS_AVAILABLE, "Redis")


def pytest_report_header(config):
    return (
        f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]} "
        f"({'PostgreSQL' if settings.POSTGRES_AVAILABLE else 'fallback'}); "
        f"broker: {settings.CELERY_BROKER_URL.split('@')[-1]}"
    )


@pytest.fixture
def make_creator(db):
    """A creator login with one newsletter of their own, as `create_newsletter` makes them."""
    from newsletters.services import creator_ensure, creator_reset_password, newsletter_create

    def make(slug, email=None):
        user, _ = creator_ensure(email=email or f"{slug}@creators.example")
        user.plain_password = creator_reset_password(user)
        newsletter, _ = newsletter_create(slug=slug, name=slug.title(), owner=user)
        return user, newsletter

    return make


@pytest.fixture
def subscribe(db):
    """Put an address on a newsletter's list directly, with the given status."""
    from subscribers.models import Subscription
    from subscribers.services import subscriber_ensure

    def make(newsletter, email, status=Subscription.Status.ACTIVE, **fields):
        subscriber = subscriber_ensure(email=email)
        return Subscription.objects.create(subscriber=subscriber, newsletter=newsletter, status=status, **fields)

    return make


@pytest.fixture
def database_url(django_db_setup, django_db_blocker):
    """DATABASE_URL of the test database, for child processes (web servers, workers)."""
    from django.db import connection

    params = connection.settings_dict
    if params["ENGINE"].endswith("sqlite3"):
        pytest.skip("child processes cannot share an in-memory SQLite database")
    auth = params["USER"] + (f":{params['PASSWORD']}" if params["PASSWORD"] else "")
    return f"postgres://{auth}@{params['HOST']}:{params['PORT'] or 5432}/{params['NAME']}"


@pytest.fixture
def smtp_sink():
    from .smtp_sink import SmtpSink

    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def start_worker(tmp_path, database_url):
    """Start real Celery worker processes: `with start_worker(queues=...) as worker:`."""
    import functools

    from .workers import celery_worker

    _require(settings.REDIS_AVAILABLE, "Redis")
    return functools.partial(celery_worker, tmp_path, database_url=database_url, redis_url=settings.REDIS_URL)


@pytest.fixture
def transport_settings(settings):
    """Point the send engine at another EMAIL_URL (and fresh per-process caches) for one test."""
    import transports
    from delivery import engine
    from ownedaudience.env import parse_email_url
    from transports import ratelimit

    def use(url, **overrides):
        transports.close_transports()
        ratelimit._bucket = None
        engine._prepared.clear()
        settings.EMAIL_URL = url
        settings.EMAIL_TRANSPORT = parse_email_url(url)
        for name, value in overrides.items():
            setattr(settings, name, value)
        return settings

    yield use
    transports.close_transports()
    ratelimit._bucket = None
    engine._prepared.clear()


@pytest.fixture
def ready_issue(make_creator, subscribe):
    """A newsletter ready to send, with `n` active subscribers, and a draft issue: (issue, subscriptions)."""
    from newsletters.models import Issue

    def make(n=5, slug="zine", body="Hello {{ name }},\n\nThis week: **things**.\n\n[Read more](https://example.org/x)"):
        _, newsletter = make_creator(slug)
        newsletter.sender_email = f"{slug}@sender.example"
        newsletter.postal_address = "1 Letter Lane, Hanoi"
        newsletter.save()
        subscriptions = [subscribe(newsletter, f"fan{i}@fans.example") for i in range(n)]
        issue = Issue.objects.create(newsletter=newsletter, title="Issue one", slug="issue-one", body_markdown=body)
        return issue, subscriptions

    return make


@pytest.fixture
def fresh_rate_limits(settings):
    """Rate-limit counters of this test only (a key prefix of its own; nothing is flushed)."""
    import uuid

    from ownedaudience import throttle

    settings.RATE_LIMIT_KEY_PREFIX = f"test-rl:{uuid.uuid4().hex}"
    throttle.reset_counters()
    yield settings
    throttle.reset_counters()


@pytest.fixture(autouse=True)
def no_send_pause_left_over():
    """A throttled send pauses every sender through Redis for minutes: one test's pause must not
    hold up the next test's send."""
    if not settings.REDIS_AVAILABLE:
        yield
        return
    import redis

    from transports.ratelimit import PAUSE_KEY

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(PAUSE_KEY)
    yield
    client.delete(PAUSE_KEY)
