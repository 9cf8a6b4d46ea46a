"""One definition of the audience: what the send button says is what the snapshot writes."""

import pytest
from django.urls import reverse

from delivery import engine
from delivery.models import Delivery
from newsletters.models import Issue
from subscribers.models import Subscription, Suppression

pytestmark = pytest.mark.django_db


@pytest.fixture
def issue_with_a_mixed_list(ready_issue, subscribe, client, monkeypatch):
    """Four active fans, one of them suppressed (in another case), one paying; one who left."""
    monkeypatch.setattr(engine.chains, "kick", lambda *a, **k: None)
    issue, subscriptions = ready_issue(n=3)
    paying = subscribe(issue.newsletter, "paying@fans.example", tier=Subscription.Tier.PAID)
    subscribe(issue.newsletter, "left@fans.example", status=Subscription.Status.UNSUBSCRIBED)
    Suppression.objects.create(email=subscriptions[0].subscriber.email.upper(), reason="bounce")
    client.force_login(issue.newsletter.owners.get())
    return issue, subscriptions, paying


def send_button(client, issue):
    return client.get(reverse("admin:newsletters_issue_change", args=[issue.pk])).content.decode()


def test_the_send_button_counts_what_the_snapshot_sends(client, issue_with_a_mixed_list):
    issue, subscriptions, paying = issue_with_a_mixed_list
    assert "Send now to 3" in send_button(client, issue)  # the suppressed fan is not counted
    assert engine.start_send(issue.pk) == 3
    sent_to = set(Delivery.objects.filter(issue=issue).values_list("subscriber_id", flat=True))
    assert subscriptions[0].subscriber_id not in sent_to and paying.subscriber_id in sent_to


def test_a_paid_issue_counts_and_sends_to_paying_members_only(client, issue_with_a_mixed_list):
    issue, _, paying = issue_with_a_mixed_list
    issue.audience = Issue.Audience.PAID
    issue.save()
    assert "Send now to 1" in send_button(client, issue)
    assert engine.start_send(issue.pk) == 1
    assert list(Delivery.objects.filter(issue=issue).values_list("subscriber_id", flat=True)) == [paying.subscriber_id]


def test_a_fan_suppressed_mid_send_is_skipped_by_the_same_rule(issue_with_a_mixed_list):
    issue, subscriptions, _ = issue_with_a_mixed_list
    engine.start_send(issue.pk)
    Suppression.objects.create(email=subscriptions[1].subscriber.email, reason="complaint")
    token, ids = engine.claim(issue.pk, "w1", 10)
    kept = {recipient.delivery_id for _, recipient in engine.recipients(issue, token, ids)}
    skipped = Delivery.objects.get(issue=issue, subscriber_id=subscriptions[1].subscriber_id)
    assert skipped.status == Delivery.Status.SKIPPED and skipped.id not in kept
    assert len(kept) == 2


def test_the_newsletter_list_counts_the_same_audience(client, issue_with_a_mixed_list):
    issue, _, _ = issue_with_a_mixed_list
    page = client.get(reverse("admin:newsletters_newsletter_changelist")).content.decode()
    assert '<td class="field-active_subscribers">3</td>' in page  # four active, one of them suppressed
