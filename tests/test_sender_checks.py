"""transports.checks.sender_problems: SES identities (against moto_server) and DKIM_DOMAIN for SMTP."""

import urllib.request
import uuid

import boto3
import pytest
from django.core.cache.backends.locmem import LocMemCache

from transports import checks

from .servers import free_port, moto_server_running


@pytest.fixture
def fresh_cache(monkeypatch):
    """A cache of this test's own in place of Django's (Redis in the suite)."""
    own = LocMemCache(f"sender-checks-{uuid.uuid4().hex}", {})
    monkeypatch.setattr(checks, "cache", own)
    return own


@pytest.fixture(scope="module")
def moto_url():
    with moto_server_running() as url:
        yield url


@pytest.fixture
def ses(moto_url, monkeypatch, settings, fresh_cache):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings.AWS_ENDPOINT_URL_SES = moto_url
    settings.EMAIL_TRANSPORT = {"transport": "ses", "region": "us-east-1", "configuration_set": ""}
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"))
    return boto3.client("sesv2", region_name="us-east-1", endpoint_url=moto_url)


def test_ses_unknown_domain_is_a_problem(ses):
    [problem] = checks.sender_problems("zine@unverified.example")
    assert "unverified.example" in problem and "neither zine@unverified.example nor unverified.example is a verified SES identity" in problem


def test_ses_verified_domain_or_address_is_fine(ses):
    ses.create_email_identity(EmailIdentity="verified.example")
    ses.create_email_identity(EmailIdentity="solo@elsewhere.example")
    assert checks.sender_problems("zine@verified.example") == []
    assert checks.sender_problems("solo@elsewhere.example") == []
    assert checks.sender_problems("other@elsewhere.example") != []


def test_ses_v1_verified_identity_counts(ses, moto_url):
    boto3.client("ses", region_name="us-east-1", endpoint_url=moto_url).verify_domain_identity(Domain="old.example")
    assert checks.sender_problems("zine@old.example") == []


def test_answers_are_cached_for_ten_minutes(ses, fresh_cache, monkeypatch):
    assert checks.sender_problems("zine@later.example") != []
    ses.create_email_identity(EmailIdentity="later.example")
    assert checks.sender_problems("zine@later.example") != []  # still the cached answer
    fresh_cache.clear()
    calls = []
    store = fresh_cache.set
    monkeypatch.setattr(fresh_cache, "set", lambda key, value, timeout: calls.append(timeout) or store(key, value, timeout))
    assert checks.sender_problems("zine@later.example") == []
    assert calls == [600]


def test_ses_that_cannot_be_reached_is_said_and_not_cached(settings, fresh_cache, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings.AWS_ENDPOINT_URL_SES = f"http://127.0.0.1:{free_port()}"
    settings.EMAIL_TRANSPORT = {"transport": "ses", "region": "us-east-1", "configuration_set": ""}
    [problem] = checks.sender_problems("zine@sender.example")
    assert "could not ask SES" in problem
    assert not fresh_cache._cache  # asked again next time


def test_smtp_with_dkim_wants_the_from_domain_inside_dkim_domain(settings, fresh_cache):
    settings.EMAIL_TRANSPORT = {"transport": "smtp", "host": "relay.example", "port": 25}
    settings.DKIM_SELECTOR, settings.DKIM_DOMAIN = "oa", "sender.example"
    settings.DKIM_PRIVATE_KEY, settings.DKIM_PRIVATE_KEY_FILE = "(a key)", ""
    assert checks.sender_problems("zine@sender.example") == []
    assert checks.sender_problems("zine@news.sender.example") == []
    [problem] = checks.sender_problems("zine@notsender.example")
    assert "without a DKIM signature" in problem and "sender.example" in problem
    # Without DKIM there is nothing to say about the domain.
    settings.DKIM_DOMAIN = ""
    assert checks.sender_problems("zine@notsender.example") == []
    assert checks.sender_problems("not an address") != []


@pytest.mark.django_db
def test_the_issue_page_flags_an_unverified_sender_before_the_first_send(ses, ready_issue, client):
    issue, _ = ready_issue(n=1)
    client.force_login(issue.newsletter.owners.get())
    page = client.get(f"/admin/newsletters/issue/{issue.pk}/change/").content.decode()
    assert "The sender address is not ready" in page and "sender.example is a verified SES identity" in page
    ses.create_email_identity(EmailIdentity="sender.example")
    checks.cache.clear()
    page = client.get(f"/admin/newsletters/issue/{issue.pk}/change/").content.decode()
    assert "The sender address is not ready" not in page
