"""The transactional outbox: every owed email goes out once, survives refusals, and says only what we wrote."""

from datetime import timedelta

import pytest
from django.utils import timezone

from subscribers import dispatch
from subscribers.models import OwedEmail, Subscription

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.usefixtures("fresh_rate_limits"),
]


@pytest.fixture
def news(make_creator):
    _, newsletter = make_creator("zine")
    newsletter.postal_address = "1 Main Street, Hanoi"
    newsletter.save()
    return newsletter


@pytest.fixture
def sink_mailer(smtp_sink, settings, transport_settings):
    """The transactional mailer pointed at the SMTP sink, as EMAIL_URL=smtp://… would."""
    from ownedaudience.settings import _mailer

    transport_settings(smtp_sink.url + "?timeout=5")
    settings.MAILERS = {**settings.MAILERS, "transactional": _mailer(settings.EMAIL_TRANSPORT)}
    return smtp_sink


@pytest.fixture
def eager_tasks():
    """Tasks run in-process where they are published, so a test sees the whole path."""
    from ownedaudience.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def sign_up(client, newsletter, email, **fields):
    response = client.post(
        f"/{newsletter.slug}/subscribe", {"email": email, **fields}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200, response.content
    return Subscription.objects.get(subscriber__email__iexact=email, newsletter=newsletter)


def test_the_dispatcher_sends_each_confirmation_once(client, news, sink_mailer, eager_tasks):
    sign_up(client, news, "ann@example.com", name="<b>Ann</b> https://evil.example")
    sign_up(client, news, "bob@example.com")
    assert dispatch.dispatch_due() == 2
    assert dispatch.dispatch_due() == 0  # nothing left to claim
    assert sorted(m.rcpt_tos[0] for m in sink_mailer.messages) == ["ann@example.com", "bob@example.com"]
    assert set(OwedEmail.objects.values_list("status", flat=True)) == {"sent"}

    message = sink_mailer.to("ann@example.com")[0].message
    assert message["Subject"] == "Confirm your subscription to Zine"
    assert message["X-Newsletter"] == "zine"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "/confirm/" in text and "/confirm/" in html and "1 Main Street, Hanoi" in text
    # What the fan typed (besides the address it goes to) is nowhere in it.
    raw = sink_mailer.to("ann@example.com")[0].raw.decode()
    assert "Ann" not in raw and "evil.example" not in raw


def test_a_duplicated_send_task_sends_nothing_twice(client, news, sink_mailer):
    sign_up(client, news, "ann@example.com")
    ids = dispatch.claim_due()
    assert dispatch.send_owed(ids) == 1
    assert dispatch.send_owed(ids) == 0  # a redelivered task finds the row already sent
    assert len(sink_mailer.messages) == 1


def test_a_refusing_server_defers_the_email_and_it_goes_later(client, news, sink_mailer):
    subscription = sign_up(client, news, "ann@example.com")
    sink_mailer.refuse("421 4.7.0 Try again later")
    dispatch.send_owed(dispatch.claim_due())
    owed = OwedEmail.objects.get(subscription=subscription)
    # The relay as a whole said "slow down": a pause, and the email spends no attempt on it.
    assert owed.status == "pending" and owed.attempts == 0 and "421" in owed.error
    assert owed.due_at > timezone.now() + timedelta(seconds=3)
    assert dispatch.claim_due() == []  # not due yet

    sink_mailer.accept()
    OwedEmail.objects.update(due_at=timezone.now())
    dispatch.send_owed(dispatch.claim_due())
    owed.refresh_from_db()
    assert owed.status == "sent" and owed.attempts == 1
    [received] = sink_mailer.to("ann@example.com")
    assert owed.message_id and owed.message_id == received.message["Message-ID"]


def test_an_email_whose_answer_was_lost_after_data_is_never_sent_again(client, news, sink_mailer):
    """The bulk engine's rule: once the message went out, a broken connection leaves it unknown."""
    sign_up(client, news, "lost@example.com")
    sign_up(client, news, "fine@example.com")
    sink_mailer.handler.hang_up_after_data = {"lost@example.com"}
    dispatch.send_owed(dispatch.claim_due())
    lost = OwedEmail.objects.get(subscription__subscriber__email="lost@example.com")
    fine = OwedEmail.objects.get(subscription__subscriber__email="fine@example.com")
    assert lost.status == "unknown" and "not resent" in lost.error
    assert fine.status == "sent" and fine.message_id
    OwedEmail.objects.update(due_at=timezone.now())
    assert dispatch.claim_due() == []  # nothing is due again: no second copy can go
    assert dispatch.recover_stale() == (0, 0)


def test_a_greylisted_address_retries_alone_and_a_throttling_relay_gives_the_rest_back(client, news, sink_mailer):
    for name in ("grey", "a", "b"):
        sign_up(client, news, f"{name}@example.com")
    sink_mailer.handler.refused_recipients = {"grey@example.com": "450 4.2.0 Greylisted"}
    ids = dispatch.claim_due()
    sink_mailer.handler.data_replies = {"a@example.com": "421 4.7.0 Slow down"}
    dispatch.send_owed(ids)
    by_address = {owed.subscription.subscriber.email: owed for owed in OwedEmail.objects.select_related(
        "subscription__subscriber")}
    grey, a, b = by_address["grey@example.com"], by_address["a@example.com"], by_address["b@example.com"]
    assert (grey.status, grey.attempts) == ("pending", 1) and "450" in grey.error  # its own retry, charged
    assert (a.status, a.attempts) == ("pending", 0) and "421" in a.error  # throttled: a pause, no charge
    assert (b.status, b.attempts, b.error) == ("pending", 0, "")  # never tried: given back as it was
    assert sink_mailer.messages == []


def test_a_permanent_refusal_fails_the_email_with_its_reason(client, news, sink_mailer):
    sign_up(client, news, "ann@example.com")
    sink_mailer.refuse("550 5.1.1 No such user")
    dispatch.send_owed(dispatch.claim_due())
    owed = OwedEmail.objects.get()
    assert owed.status == "failed" and "550" in owed.error


def test_a_confirmation_nobody_needs_any_more_is_skipped(client, news, sink_mailer):
    subscription = sign_up(client, news, "ann@example.com")
    Subscription.objects.filter(id=subscription.id).update(status="active")
    dispatch.send_owed(dispatch.claim_due())
    assert OwedEmail.objects.get().status == "skipped"
    assert sink_mailer.messages == []


def test_lost_rows_are_recovered_without_sending_twice(client, news):
    sign_up(client, news, "ann@example.com")
    sign_up(client, news, "bob@example.com")
    long_ago = timezone.now() - timedelta(hours=1)
    first, second = OwedEmail.objects.order_by("id")
    OwedEmail.objects.filter(id=first.id).update(status="queued", queued_at=long_ago)  # the broker lost it
    OwedEmail.objects.filter(id=second.id).update(
        status="sending", sending_at=long_ago
    )  # worker died mid-send
    assert dispatch.recover_stale() == (1, 1)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == "pending"
    assert second.status == "unknown" and "not resent" in second.error


def test_welcome_email_carries_the_creators_words_and_one_click_headers(
    client, news, sink_mailer, eager_tasks
):
    from django.test import Client
    from django.urls import reverse

    from subscribers.tokens import make_token

    news.welcome_subject = "Welcome to Zine!"
    news.welcome_body = "Thanks for joining.\n\nStart here: https://zine.example/start"
    news.save()
    subscription = sign_up(client, news, "ann@example.com")
    client.post(reverse("subscribers:confirm", args=[make_token("confirm", subscription.id)]))
    dispatch.dispatch_due()
    welcome = next(
        m.message for m in sink_mailer.to("ann@example.com") if m.message["Subject"] == "Welcome to Zine!"
    )
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = welcome["List-Unsubscribe"].strip("<>")
    html = welcome.get_body(("html",)).get_content()
    assert '<a href="https://zine.example/start"' in html
    # The header's URL unsubscribes with a cookie-free, token-free POST.
    path = url.split("://", 1)[1].split("/", 1)[1]
    response = Client(enforce_csrf_checks=True).post(
        "/" + path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    subscription.refresh_from_db()
    assert subscription.status == "unsubscribed"


def test_emails_follow_the_newsletter_language(client, news, sink_mailer, eager_tasks):
    news.language = "vi"
    news.save()
    sign_up(client, news, "an@example.com")
    dispatch.dispatch_due()
    message = sink_mailer.to("an@example.com")[0].message
    assert message["Subject"] == "Xác nhận đăng ký nhận Zine"
    assert "Vui lòng xác nhận bạn muốn nhận Zine." in message.get_body(("plain",)).get_content()


def test_the_data_export_email_holds_the_consent_record(client, news, sink_mailer, eager_tasks):
    import json

    from subscribers.services import data_export_request

    subscription = sign_up(client, news, "ann@example.com", ref="tiktok")
    data_export_request(subscription=subscription)
    dispatch.dispatch_due()
    message = next(m.message for m in sink_mailer.to("ann@example.com") if "data" in m.message["Subject"])
    attachment = next(message.iter_attachments())
    data = json.loads(attachment.get_content())
    assert data["email"] == "ann@example.com"
    assert data["subscriptions"][0]["source"] == "tiktok"
    assert data["subscriptions"][0]["consent"]["ip"] == "127.0.0.1"


def test_a_nudge_never_raises_when_the_broker_is_away(settings, monkeypatch):
    from celery import current_app

    from subscribers import nudge

    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(current_app, "send_task", broker_down)
    monkeypatch.setattr(nudge, "_last_nudge", 0.0)
    monkeypatch.setattr(nudge, "_nudges_paused_until", 0.0)
    nudge.nudge()  # logged, not raised
    assert nudge._nudges_paused_until > 0