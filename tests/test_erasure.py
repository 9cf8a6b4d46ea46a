"""Erasure: "delete my data" removes a person everywhere (subscriptions, their events, owed emails,
the ledger, the dev outbox, the admin's history), a creator's erase only from their own lists, and
what stays is a digest that keeps creators from adding them back by hand."""

import pytest
from django.contrib.admin.models import LogEntry
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from delivery import engine
from delivery.erasure import LEDGER_DELETE
from delivery.models import Delivery, OutboxMessage
from subscribers import services
from subscribers.addresses import erased_digest
from subscribers.erasure import erase_subscriber, is_erased
from subscribers.models import (
    ErasedAddress,
    OwedEmail,
    Subscriber,
    Subscription,
    SubscriptionEvent,
    Suppression,
)
from subscribers.tokens import make_token

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.redis]
FAN = "fan0@fans.example"


@pytest.fixture
def sent(ready_issue, transport_settings, monkeypatch):
    """Two creators' newsletters, the same three fans on both, an issue of each sent through the dev
    outbox; the first fan also has a history and an owed email on the first."""
    transport_settings("outbox://")
    monkeypatch.setattr(engine.chains, "kick", lambda *args, **kwargs: None)

    def send(slug):
        issue, subscriptions = ready_issue(n=3, slug=slug)
        engine.start_send(issue.pk)
        while engine.send_next_batch(issue.pk, "w1")[0] == "again":
            pass
        return subscriptions[0]

    mine, theirs = send("zine"), send("other")
    services.subscription_change(mine.id, kind=SubscriptionEvent.Kind.TIER, actor="creator", tier="comped")
    services.data_export_request(subscription=mine)
    assert Delivery.objects.filter(subscriber_id=mine.subscriber_id).count() == 2
    assert OutboxMessage.objects.filter(to=FAN).count() == 2
    return mine, theirs


def traces(subscriber_id, subscription_ids):
    """Every row that still names the person, by address or by id."""
    return {
        "subscriber": Subscriber.objects.filter(email__iexact=FAN).count()
        + Subscriber.objects.filter(pk=subscriber_id).count(),
        "subscriptions": Subscription.objects.filter(subscriber_id=subscriber_id).count(),
        "events": SubscriptionEvent.objects.filter(subscription_id__in=subscription_ids).count(),
        "owed": OwedEmail.objects.filter(subscription_id__in=subscription_ids).count(),
        "deliveries": Delivery.objects.filter(subscriber_id=subscriber_id).count(),
        "outbox": OutboxMessage.objects.filter(to__icontains=FAN).count(),
        "admin history": LogEntry.objects.filter(object_repr__icontains=FAN).count(),
    }


def test_the_fan_deletes_their_data_from_the_preference_page(client, sent):
    mine, theirs = sent
    preferences = reverse("subscribers:preferences", args=[make_token("preferences", mine.id)])
    erase = reverse("subscribers:erase", args=[make_token("preferences", mine.id)])
    page = client.get(preferences).content.decode()
    assert "Delete my data" in page and f'href="{erase}"' in page

    before = traces(mine.subscriber_id, [mine.id, theirs.id])
    page = client.get(erase)  # what a link scanner does: nothing changes
    assert page.status_code == 200 and 'method="post"' in page.content.decode()
    assert "Zine" in page.content.decode() and "Other" in page.content.decode()
    assert traces(mine.subscriber_id, [mine.id, theirs.id]) == before
    assert all(count for name, count in before.items() if name != "admin history"), before

    with CaptureQueriesContext(connection) as queries:
        done = client.post(erase)
    assert done.status_code == 200 and "Your data is deleted" in done.content.decode()
    assert set(traces(mine.subscriber_id, [mine.id, theirs.id]).values()) == {0}
    assert ErasedAddress.objects.filter(digest=erased_digest(FAN), newsletter=None).exists()
    # The ledger was reached by its unique index only, never by Django's cascade (a scan by subscriber).
    ledger = [q["sql"] for q in queries.captured_queries if "newsletters_delivery" in q["sql"]]
    assert ledger and all("= ANY(" in sql for sql in ledger), ledger
    # The other fans keep everything.
    assert Delivery.objects.count() == 4 and OutboxMessage.objects.filter(to="fan1@fans.example").count() == 2

    for link in (preferences, erase):
        gone = client.get(link)
        assert gone.status_code == 404 and "This link does not work" in gone.content.decode()
    assert client.post(erase).status_code == 404


def test_the_pages_speak_the_newsletters_language(client, make_creator, subscribe):
    newsletter = make_creator("bao")[1]
    newsletter.language = "vi"
    newsletter.save()
    subscription = subscribe(newsletter, "ban@example.vn")
    erase = reverse("subscribers:erase", args=[make_token("preferences", subscription.id)])
    page = client.get(erase)
    assert page["Content-Language"] == "vi" and "Xóa dữ liệu của bạn?" in page.content.decode()
    done = client.post(erase).content.decode()
    assert "Dữ liệu của bạn đã được xóa" in done
    assert not Subscriber.objects.filter(email="ban@example.vn").exists()


def test_a_creator_erases_a_person_from_their_own_newsletter_only(client, sent, make_creator):
    mine, theirs = sent
    owner = mine.newsletter.owners.get()
    client.force_login(owner)
    changelist = reverse("admin:subscribers_subscription_changelist")
    # Another creator's subscription of the same person is not theirs to select.
    asked = client.post(changelist, {"action": "erase_selected", "_selected_action": [mine.pk, theirs.pk]})
    assert asked.status_code == 200 and "Yes, erase them" in asked.content.decode()
    assert f"{FAN} → Zine" in asked.content.decode() and "→ Other" not in asked.content.decode()
    assert Subscription.objects.filter(pk=mine.pk).exists()

    done = client.post(changelist, {"action": "erase_selected", "_selected_action": [mine.pk, theirs.pk],
                                    "post": "yes"}, follow=True)
    assert "1 subscription erased" in done.content.decode()
    assert not Subscription.objects.filter(pk=mine.pk).exists()
    assert not SubscriptionEvent.objects.filter(subscription_id=mine.pk).exists()
    assert not OwedEmail.objects.filter(subscription_id=mine.pk).exists()
    # On the other creator's list the person stays, with what that newsletter sent them.
    assert Subscription.objects.filter(pk=theirs.pk).exists()
    assert Subscriber.objects.filter(pk=mine.subscriber_id).exists()
    assert list(Delivery.objects.filter(subscriber_id=mine.subscriber_id).values_list("issue__newsletter", flat=True)) \
        == [theirs.newsletter_id]
    assert list(OutboxMessage.objects.filter(to=FAN).values_list("newsletter", flat=True)) == [theirs.newsletter_id]
    assert list(ErasedAddress.objects.values_list("newsletter", flat=True)) == [mine.newsletter_id]
    assert is_erased(FAN, mine.newsletter_id) and not is_erased(FAN, theirs.newsletter_id)


def test_the_last_list_erased_takes_the_persons_row_and_the_admin_history(client, make_creator):
    user, newsletter = make_creator("zine")
    client.force_login(user)
    client.post(reverse("admin:subscribers_subscription_add"),
                {"email": FAN, "newsletter": newsletter.pk, "source": "market stall"})
    subscription = Subscription.objects.get(subscriber__email=FAN)
    assert LogEntry.objects.filter(object_repr__icontains=FAN).exists()
    assert erase_subscriber(subscription.subscriber_id, newsletter_ids=[newsletter.pk], actor="creator",
                            actor_user=user) == 1
    assert set(traces(subscription.subscriber_id, [subscription.id]).values()) == {0}


def test_an_erased_address_cannot_be_added_back_by_hand_but_may_sign_up_again(client, make_creator, subscribe):
    user, newsletter = make_creator("zine")
    subscription = subscribe(newsletter, FAN)
    erase_subscriber(subscription.subscriber_id, actor="fan")
    for attested in (True, False):
        with pytest.raises(ValidationError, match="asked to be forgotten"):
            services.subscription_add_by_creator(newsletter=newsletter, email=FAN.upper(), user=user,
                                                 attested=attested)
    client.force_login(user)
    page = client.post(reverse("admin:subscribers_subscription_add"),
                       {"email": FAN, "newsletter": newsletter.pk, "attested": "on"})
    assert page.status_code == 200 and "asked to be forgotten" in page.content.decode()
    assert not Subscriber.objects.filter(email=FAN).exists()
    _, outcome = services.signup(newsletter=newsletter, email=FAN, consent_text="Yes, please.")
    assert outcome == services.SignupOutcome.NEW  # the person's own new consent


def test_an_operator_erases_everywhere_and_a_creator_cannot(client, make_creator, subscribe, django_user_model):
    creator, newsletter = make_creator("zine")
    other = make_creator("other")[1]
    subscriptions = [subscribe(newsletter, FAN), subscribe(other, FAN)]
    Suppression.objects.create(email=FAN.upper(), reason="complaint")
    changelist = reverse("admin:subscribers_subscriber_changelist")
    client.force_login(creator)
    assert "erase_everywhere" not in client.get(changelist).content.decode()
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.org", "pw"))
    subscriber_id = subscriptions[0].subscriber_id
    asked = client.post(changelist, {"action": "erase_everywhere", "_selected_action": [subscriber_id]})
    assert "every newsletter here" in asked.content.decode() and Subscriber.objects.filter(pk=subscriber_id).exists()
    done = client.post(changelist, {"action": "erase_everywhere", "_selected_action": [subscriber_id],
                                    "post": "yes"}, follow=True)
    assert "1 person erased everywhere." in done.content.decode()
    assert set(traces(subscriber_id, [s.id for s in subscriptions]).values()) == {0}
    assert not Suppression.objects.exists()  # its plain address: the digest replaces it
    assert is_erased(FAN, other.pk) and is_erased(FAN, newsletter.pk)


def test_without_the_digest_nothing_is_kept(settings, make_creator, subscribe):
    settings.ERASURE_KEEP_DIGEST = False
    subscription = subscribe(make_creator("zine")[1], FAN)
    assert erase_subscriber(subscription.subscriber_id, actor="fan") == 1
    assert not ErasedAddress.objects.exists() and not Subscriber.objects.exists()


def test_the_ledger_delete_probes_the_unique_index_instead_of_scanning(ready_issue):
    issue, _ = ready_issue(n=1)
    with connection.cursor() as cursor:  # a ledger big enough for the planner to care: 10 issues × 3,000
        cursor.execute("""
            INSERT INTO newsletters_delivery (issue_id, subscriber_id, variant, status, attempts, claimed_by,
                message_id, error)
            SELECT %s + i, s, 'free', 'sent', 1, '', '', '' FROM generate_series(0, 9) i, generate_series(1, 3000) s
        """, [issue.pk])
        cursor.execute("ANALYZE newsletters_delivery")
        cursor.execute("EXPLAIN " + LEDGER_DELETE, [list(range(issue.pk, issue.pk + 10)), [17, 2024]])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Seq Scan on newsletters_delivery" not in plan and "delivery_unique_pair" in plan, plan


def test_every_table_pointing_at_a_person_is_known_to_the_erasure():
    """erase_subscriber deletes the person's row by hand (Django's cascade would scan the ledger), so a
    new table that points at Subscriber must delete its rows on subscribers_erasing, then join this list."""
    pointing = {relation.related_model._meta.label for relation in Subscriber._meta.related_objects}
    assert pointing == {"subscribers.Subscription", "delivery.Delivery"}
