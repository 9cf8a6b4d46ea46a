"""Before anything is sent: bad issues are refused with a reason, and nothing goes out."""

import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from delivery import engine
from delivery.models import Delivery, OutboxMessage
from newsletters.models import Issue

pytestmark = pytest.mark.django_db


def problems_of(issue):
    with pytest.raises(engine.IssueNotReady) as caught:
        engine.start_send(issue.pk)
    issue.refresh_from_db()
    assert issue.status == Issue.Status.DRAFT
    assert not Delivery.objects.filter(issue=issue).exists()
    return " ".join(caught.value.problems)


def test_an_issue_without_a_subject_is_refused(ready_issue):
    issue, _ = ready_issue()
    issue.title = "  "
    issue.save()
    assert "no subject" in problems_of(issue)


def test_a_script_in_the_body_is_refused(ready_issue):
    issue, _ = ready_issue(body="Hi!\n\n<script>steal(document.cookie)</script>")
    assert "<script>" in problems_of(issue)


@pytest.mark.parametrize(
    "body, words",
    [
        ('<a href="javascript:alert(1)">x</a>', "javascript:"),
        ('<img src="x.png" onerror="alert(1)">', "onerror"),
        ("<iframe src=https://evil.example></iframe>", "<iframe>"),
        ("line one\n\x07hidden", "control character"),
        ("", "body is empty"),
    ],
)
def test_hostile_or_broken_bodies_are_refused(ready_issue, body, words):
    issue, _ = ready_issue(body=body)
    assert words in problems_of(issue)


def test_a_newsletter_without_a_postal_address_is_refused(ready_issue):
    issue, _ = ready_issue()
    issue.newsletter.postal_address = ""
    issue.newsletter.save()
    assert "postal address" in problems_of(issue)


def test_send_issue_command_explains_and_fails(ready_issue):
    issue, _ = ready_issue(body="<script>x</script>")
    with pytest.raises(CommandError, match="cannot be sent yet"):
        call_command("send_issue", issue.pk)
    assert not OutboxMessage.objects.exists()


def test_send_issue_command_for_a_missing_issue():
    with pytest.raises(CommandError, match="no issue 999"):
        call_command("send_issue", 999)


def test_send_issue_command_exits_non_zero_from_the_shell(tmp_path):
    from .servers import ROOT, project_env

    env = project_env(VAR_DIR=tmp_path, DATABASE_URL="", REDIS_URL="", DEBUG="true")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    result = subprocess.run(
        [sys.executable, "manage.py", "send_issue", "424242"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "There is no issue 424242" in result.stderr
