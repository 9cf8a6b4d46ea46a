"""The dev outbox files a message under its newsletter's id, never under a name that can change hands."""

import pytest
from django.core.mail import EmailMessage
from django.urls import reverse

from delivery.models import OutboxMessage
from delivery.outbox import NEWSLETTER_HEADER, OutboxBackend
from delivery.outbox_transport import OutboxTransport
from transports import Outgoing

pytestmark = pytest.mark.django_db

RAW = (b"From: Alpha <alpha@creators.example>\r\nTo: bulk.fan@fans.example\r\nSubject: Issue one\r\n"
       b"X-Newsletter: alpha\r\nMessage-ID: <m@x>\r\nContent-Type: text/plain\r\n\r\nHello.\r\n")


def outbox_page(client, user):
    client.force_login(user)
    return client.get(reverse("admin:delivery_outboxmessage_changelist")).content.decode()


def test_a_newsletter_given_a_renamed_ones_old_slug_sees_none_of_its_mail(client, make_creator):
    alice, alpha = make_creator("alpha", email="alice@creators.example")
    # A confirmation (the transactional mailer) and an issue (the bulk transport), both for alpha.
    OutboxBackend(alias="transactional").send_messages([EmailMessage(
        "Confirm", "Click: /confirm/secret-token", "alpha@creators.example", ["fan@fans.example"],
        headers={NEWSLETTER_HEADER: "alpha"},
    )])
    OutboxTransport().send([Outgoing(1, "alpha@creators.example", "bulk.fan@fans.example", "<m@x>", RAW)])
    assert set(OutboxMessage.objects.values_list("newsletter_id", flat=True)) == {alpha.id}

    alpha.slug = "alpha-old"
    alpha.save()
    mallory, new_alpha = make_creator("alpha", email="mallory@creators.example")
    assert new_alpha.id != alpha.id

    page = outbox_page(client, mallory)
    assert "fan@fans.example" not in page and "bulk.fan@fans.example" not in page
    for message in OutboxMessage.objects.all():
        url = reverse("admin:delivery_outboxmessage_change", args=[message.pk])
        response = client.get(url)
        assert response.status_code in (302, 404) and b"secret-token" not in response.content
    page = outbox_page(client, alice)
    assert "fan@fans.example" in page and "bulk.fan@fans.example" in page
