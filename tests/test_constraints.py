"""The database itself refuses what would break the list: checked on PostgreSQL."""

import pytest
from django.db import IntegrityError, transaction

from delivery.models import Delivery
from newsletters.models import Issue
from subscribers.models import Subscriber, Subscription
from subscribers.services import subscriber_ensure

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def test_same_address_in_another_case_is_refused():
    Subscriber.objects.create(email="Jane.Doe@Example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscriber.objects.create(email="jane.doe@example.COM")
    assert Subscriber.objects.count() == 1


def test_plus_tags_are_different_people():
    Subscriber.objects.create(email="jane@example.com")
    Subscriber.objects.create(email="jane+news@example.com")
    assert Subscriber.objects.count() == 2


def test_subscriber_ensure_finds_the_row_whatever_the_case():
    first = subscriber_ensure(email="  Ann@Example.com ")
    again = subscriber_ensure(email="ann@example.com")
    assert first.pk == again.pk
    assert first.email == "Ann@Example.com"


def test_second_delivery_for_the_same_issue_and_subscriber_is_refused(make_creator):
    _, newsletter = make_creator("alpha")
    issue = Issue.objects.create(newsletter=newsletter, title="First", slug="first")
    subscriber = Subscriber.objects.create(email="fan@example.com")
    Delivery.objects.create(issue=issue, subscriber=subscriber)
    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.create(issue=issue, subscriber=subscriber)
    assert Delivery.objects.filter(issue=issue).count() == 1


def test_one_subscription_per_subscriber_and_newsletter(make_creator):
    _, newsletter = make_creator("alpha")
    subscriber = Subscriber.objects.create(email="fan@example.com")
    Subscription.objects.create(subscriber=subscriber, newsletter=newsletter)
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.create(subscriber=subscriber, newsletter=newsletter)


def test_unknown_status_is_refused(make_creator):
    _, newsletter = make_creator("alpha")
    subscriber = Subscriber.objects.create(email="fan@example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.create(subscriber=subscriber, newsletter=newsletter, status="maybe")


def test_issue_slug_is_unique_within_a_newsletter_only(make_creator):
    _, alpha = make_creator("alpha")
    _, beta = make_creator("beta")
    Issue.objects.create(newsletter=alpha, title="Hello", slug="hello")
    Issue.objects.create(newsletter=beta, title="Hello", slug="hello")
    with pytest.raises(IntegrityError), transaction.atomic():
        Issue.objects.create(newsletter=alpha, title="Hello again", slug="hello")


def test_erasing_a_subscriber_or_deleting_an_issue_removes_their_deliveries(make_creator):
    _, newsletter = make_creator("alpha")
    first = Issue.objects.create(newsletter=newsletter, title="First", slug="first")
    second = Issue.objects.create(newsletter=newsletter, title="Second", slug="second")
    leaving, staying = Subscriber.objects.create(email="gone@example.com"), Subscriber.objects.create(email="x@y.z")
    for issue in (first, second):
        for subscriber in (leaving, staying):
            Delivery.objects.create(issue=issue, subscriber=subscriber)
    leaving.delete()
    assert set(Delivery.objects.values_list("subscriber_id", flat=True)) == {staying.pk}
    first.delete()
    assert list(Delivery.objects.values_list("issue_id", flat=True)) == [second.pk]
