"""A send that stops itself: the transport refuses the account (a wrong SMTP password, an SES
sender that is not verified), the send pauses after its first window with the reason, its rows
stay pending, and a resume after the fix sends each of them once."""

import time

import boto3
import pytest
from django.core import mail

from delivery import engine
from delivery.models import Delivery
from newsletters.models import Issue

from .smtp_sink import SmtpSink
from .test_send_faults import FAST, assert_exactly_once, issue_status, wait_until
from .test_send_ses import aws_env, moto_server  # noqa: F401  (fixtures)

S = Delivery.Status


def statuses(issue):
    return sorted(set(Delivery.objects.filter(issue=issue).values_list("status", flat=True)))


@pytest.fixture
def relay():
    sink = SmtpSink(credentials=("relay-user", "s3cret")).start()
    yield sink
    sink.stop()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_wrong_smtp_password_pauses_the_send_and_a_resume_completes_it_once(ready_issue, relay, start_worker):
    issue, _ = ready_issue(n=40)
    env = dict(FAST, SEND_WINDOW=5, SEND_BATCH_SIZE=20, SEND_CHAINS=2)
    wrong = f"smtp://relay-user:wrong@127.0.0.1:{relay.port}?timeout=5"
    with start_worker(name="wrong", beat=True, EMAIL_URL=wrong, **env):
        engine.start_send(issue.pk)
        wait_until(lambda: issue_status(issue) == Issue.Status.PAUSED, 30, "the send did not pause")
        time.sleep(1.5)  # the beat's watchdog runs meanwhile: a paused send stays paused
        assert issue_status(issue) == Issue.Status.PAUSED
    issue.refresh_from_db()
    assert "535" in issue.paused_reason and "login" in issue.paused_reason
    # Nothing went out, nothing failed, nothing spent an attempt: every row waits.
    assert not relay.messages
    assert statuses(issue) == [S.PENDING]
    assert set(Delivery.objects.filter(issue=issue).values_list("attempts", flat=True)) == {0}

    right = f"smtp://relay-user:s3cret@127.0.0.1:{relay.port}?timeout=5"
    with start_worker(name="fixed", beat=True, EMAIL_URL=right, **env):
        assert engine.resume(issue.pk)
        wait_until(lambda: issue_status(issue) == Issue.Status.SENT, 60, "the resumed send did not complete")
    assert_exactly_once(issue, relay)
    assert Delivery.objects.filter(issue=issue, status=S.SENT).count() == 40
    issue.refresh_from_db()
    assert issue.paused_reason == ""


@pytest.mark.postgres
@pytest.mark.django_db
def test_an_unverified_ses_sender_pauses_the_send_and_the_owner_is_told(
        moto_server, ready_issue, transport_settings, monkeypatch, settings):  # noqa: F811
    monkeypatch.setattr(engine.chains, "kick", lambda *a, **k: None)
    transport_settings("ses://us-east-1", SEND_RATE=1000, SEND_WINDOW=4, SEND_BATCH_SIZE=50)
    told = []
    monkeypatch.setattr("delivery.pausing._tell_owners", told.append)
    issue, _ = ready_issue(n=12)
    engine.start_send(issue.pk)
    with_commit = engine.send_next_batch(issue.pk, "w")
    assert with_commit == ("done", 0), list(Delivery.objects.filter(issue=issue).values_list("status", "error"))[:2]
    issue.refresh_from_db()
    assert issue.status == Issue.Status.PAUSED
    assert "MessageRejected" in issue.paused_reason and "authority to send" in issue.paused_reason
    assert statuses(issue) == [S.PENDING]
    # While paused, a worker that picks the issue up sends nothing.
    assert engine.send_next_batch(issue.pk, "w") == ("done", 0)

    # The owner's notice says why and where to resume (the transactional mailer is locmem here).
    settings.MAILERS = {"transactional": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    from delivery.notices import send_pause_notice

    assert send_pause_notice(issue.pk) == ["zine@creators.example"]
    [notice] = mail.outbox
    assert "Sending paused: Issue one" == notice.subject
    assert "authority to send" in notice.body and f"/admin/newsletters/issue/{issue.pk}/change/" in notice.body

    boto3.client("sesv2", region_name="us-east-1", endpoint_url=moto_server).create_email_identity(
        EmailIdentity="sender.example"
    )
    assert engine.resume(issue.pk)
    while engine.send_next_batch(issue.pk, "w")[0] == "again":
        pass
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENT
    assert statuses(issue) == [S.SENT]
    assert not engine.resume(issue.pk)  # nothing to resume twice


@pytest.mark.django_db
def test_the_issue_page_shows_the_reason_and_resumes(ready_issue, client, django_user_model, monkeypatch):
    kicked = []
    monkeypatch.setattr(engine.chains, "kick", lambda issue_id, chains=1: kicked.append(issue_id))
    issue, _ = ready_issue(n=3)
    engine.start_send(issue.pk)
    admin_user = django_user_model.objects.create_superuser("root", "root@example.org", "pw")
    client.force_login(admin_user)
    page = f"/admin/newsletters/issue/{issue.pk}/change/"
    client.post(f"/admin/newsletters/issue/{issue.pk}/pause/")
    issue.refresh_from_db()
    assert issue.status == Issue.Status.PAUSED and issue.paused_reason == "Paused by root."
    body = client.get(page).content.decode()
    assert "This send paused itself." in body and "Paused by root." in body and "Resume sending" in body
    kicked.clear()
    client.post(f"/admin/newsletters/issue/{issue.pk}/resume/")
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENDING and kicked == [issue.pk]
    assert "Pause sending" in client.get(page).content.decode()


@pytest.mark.django_db
def test_the_owners_notice_speaks_the_newsletters_language(ready_issue, monkeypatch, settings):
    monkeypatch.setattr(engine.chains, "kick", lambda *a, **k: None)
    monkeypatch.setattr("delivery.pausing._tell_owners", lambda issue_id: None)
    settings.MAILERS = {"transactional": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    issue, _ = ready_issue(n=2)
    issue.newsletter.language = "vi"
    issue.newsletter.save()
    engine.start_send(issue.pk)
    assert engine.pause(issue.pk, "535 5.7.8 Authentication credentials invalid")
    from delivery.notices import send_pause_notice

    send_pause_notice(issue.pk)
    [notice] = mail.outbox
    assert notice.subject == "Đã tạm dừng gửi: Issue one"
    assert "Lý do: 535 5.7.8" in notice.body and "Không ai bị bỏ sót" in notice.body
    engine.resume(issue.pk)
    mail.outbox.clear()
    assert send_pause_notice(issue.pk) is None and not mail.outbox  # resumed first: nothing to tell
