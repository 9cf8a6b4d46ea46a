"""`manage.py send_issue ISSUE_ID --test-to ADDRESS`, run as an operator would, from its own process."""

import subprocess
import sys

import pytest

from .servers import ROOT, project_env

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def send_issue(database_url, email_url, *args):
    return subprocess.run(
        [sys.executable, "manage.py", "send_issue", *map(str, args)],
        cwd=ROOT, env=project_env(DATABASE_URL=database_url, EMAIL_URL=email_url),
        capture_output=True, text=True, timeout=60,
    )


def test_a_test_copy_goes_through_the_configured_transport(ready_issue, database_url, smtp_sink):
    issue, _ = ready_issue()
    result = send_issue(database_url, smtp_sink.url, issue.pk, "--test-to", "creator@example.com")
    assert result.returncode == 0, result.stderr
    [received] = smtp_sink.to("creator@example.com")
    assert received.message["Subject"] == "[Test] Issue one"
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_refused_test_copy_exits_non_zero(ready_issue, database_url, smtp_sink):
    issue, _ = ready_issue()
    smtp_sink.refuse("554 5.7.1 Message rejected")
    result = send_issue(database_url, smtp_sink.url, issue.pk, "--test-to", "creator@example.com")
    assert result.returncode == 1
    assert "554 5.7.1 Message rejected" in result.stderr


def test_an_unreachable_server_exits_non_zero(ready_issue, database_url):
    issue, _ = ready_issue()
    result = send_issue(database_url, "smtp://127.0.0.1:1", issue.pk, "--test-to", "creator@example.com")
    assert result.returncode == 1
    assert "not accepted" in result.stderr
