"""Subscriber imports end to end: the command's counts line, what lands in the audience, the
events and attestation, idempotence, consent never upgraded, the admin upload run by a real worker."""

import io
import json
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from delivery.models import Delivery
from subscribers.models import ErasedAddress, Subscriber, Subscription, SubscriptionEvent
from subscribers.addresses import erased_digest
from subscribers.selectors import audience

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
EXPECTED = {
    "substack.csv": {"active": 9, "suppressed": 2, "paid": 3, "rejected": 1},
    "mailchimp_subscribed.csv": {"active": 12, "suppressed": 0, "paid": 0, "rejected": 0},
    "mailchimp_unsubscribed.csv": {"active": 0, "suppressed": 5, "paid": 0, "rejected": 0},
    "mailchimp_cleaned.csv": {"active": 0, "suppressed": 3, "paid": 0, "rejected": 0},
    "ghost.csv": {"active": 10, "suppressed": 2, "paid": 3, "rejected": 0},
    "kit.csv": {"active": 8, "suppressed": 4, "paid": 0, "rejected": 0},
    "buttondown.csv": {"active": 9, "suppressed": 3, "paid": 3, "rejected": 0},
    "beehiiv.csv": {"active": 9, "suppressed": 3, "paid": 3, "rejected": 0},
}
S = Subscription.Status


def run_import(path, slug, *extra):
    out, err = io.StringIO(), io.StringIO()
    call_command("import_subscribers", str(path), "--newsletter", slug, *extra, stdout=out, stderr=err)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1, out.getvalue()  # one JSON line, nothing else on stdout
    return json.loads(lines[0]), err.getvalue()


def statuses(newsletter):
    return {
        email.lower(): (status, tier)
        for email, status, tier in Subscription.objects.filter(newsletter=newsletter).values_list(
            "subscriber__email", "status", "tier"
        )
    }


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_imports_with_the_counts_of_the_guide(name, make_creator):
    _, newsletter = make_creator("zine")
    counts, _ = run_import(FIXTURES / name, "zine")
    assert counts == EXPECTED[name]
    rows = statuses(newsletter)
    assert sum(status == S.ACTIVE for status, _ in rows.values()) == counts["active"]
    assert sum(status != S.ACTIVE for status, _ in rows.values()) == counts["suppressed"]
    assert sum(status == S.ACTIVE and tier != "free" for status, tier in rows.values()) == counts["paid"]
    assert audience(newsletter.pk).count() == counts["active"]


@pytest.mark.django_db
def test_substack_people_land_as_the_guide_says(make_creator):
    _, newsletter = make_creator("zine")
    _, report = run_import(FIXTURES / "substack.csv", "zine")
    rows = statuses(newsletter)
    liam = next(status for email, status in rows.items() if email.startswith("liam.obrien"))
    assert liam == (S.UNSUBSCRIBED, "paid")  # a paying member with email off: kept, paid, never mailed
    carlos = next(status for email, status in rows.items() if email.startswith("carlos.mendoza"))
    assert carlos[0] == S.UNSUBSCRIBED
    assert not any("deletion-request.substack.com" in email for email in rows)
    assert "deletion-request" in report.lower() or "placeholder" in report.lower()  # the rejected row, by line
    subscription = Subscription.objects.filter(newsletter=newsletter, status=S.ACTIVE).first()
    assert subscription.consent_form == "import:substack"
    assert "attested" in subscription.consent_text and "Substack" in subscription.consent_text
    # The original sign-up date is kept, not the day of the import.
    assert subscription.created_at.year < 2026


@pytest.mark.django_db
def test_the_first_event_of_each_imported_subscription_carries_the_attestation(make_creator):
    _, newsletter = make_creator("zine")
    run_import(FIXTURES / "ghost.csv", "zine")
    events = SubscriptionEvent.objects.filter(subscription__newsletter=newsletter)
    assert events.count() == Subscription.objects.filter(newsletter=newsletter).count()  # one each
    for event in events.filter(to_status=S.ACTIVE):
        assert event.kind == "import" and event.actor == "import"
        assert "attested" in event.consent_text and "Ghost" in event.consent_text
        assert "ghost.csv, line " in event.detail
    unsubscribed = events.exclude(to_status=S.ACTIVE).first()
    assert unsubscribed.consent_text == ""  # nobody attests for a reader who left


@pytest.mark.django_db
def test_an_address_unsubscribed_on_the_old_platform_never_receives_a_send(make_creator):
    from delivery import engine
    from newsletters.models import Issue

    _, newsletter = make_creator("zine")
    newsletter.sender_email, newsletter.postal_address = "zine@sender.example", "1 Letter Lane, Hanoi"
    newsletter.save()
    run_import(FIXTURES / "mailchimp_subscribed.csv", "zine")
    run_import(FIXTURES / "mailchimp_unsubscribed.csv", "zine")
    run_import(FIXTURES / "mailchimp_cleaned.csv", "zine")
    left = set(Subscription.objects.filter(newsletter=newsletter).exclude(status=S.ACTIVE)
               .values_list("subscriber_id", flat=True))
    assert len(left) == 8
    issue = Issue.objects.create(newsletter=newsletter, title="One", slug="one", body_markdown="Hello")
    recipients = engine.start_send(issue.pk)
    sent_to = set(Delivery.objects.filter(issue=issue).values_list("subscriber_id", flat=True))
    assert recipients == len(sent_to) == audience(newsletter.pk).count() > 0
    assert not sent_to & left


@pytest.mark.django_db
def test_importing_the_same_file_twice_changes_nothing(make_creator):
    _, newsletter = make_creator("zine")
    first, _ = run_import(FIXTURES / "buttondown.csv", "zine")
    before = (
        list(Subscription.objects.filter(newsletter=newsletter).order_by("id").values()),
        SubscriptionEvent.objects.count(), Subscriber.objects.count(),
    )
    second, report = run_import(FIXTURES / "buttondown.csv", "zine")
    assert second == first  # what the file holds
    after = (
        list(Subscription.objects.filter(newsletter=newsletter).order_by("id").values()),
        SubscriptionEvent.objects.count(), Subscriber.objects.count(),
    )
    assert after == before
    assert "0 new subscriptions, 0 changed" in report


@pytest.mark.django_db
def test_active_here_and_suppressed_in_the_file_becomes_suppressed_never_the_other_way(make_creator, subscribe):
    _, newsletter = make_creator("zine")
    # Unsubscribed in the file, active here: suppressed, with an event saying the import did it.
    text = (FIXTURES / "mailchimp_unsubscribed.csv").read_text()
    leaving = text.splitlines()[1].split(",")[0].strip('"')
    here = subscribe(newsletter, leaving, status=S.ACTIVE)
    # Active in the file, unsubscribed here: stays unsubscribed (consent is never upgraded).
    staying_out = (FIXTURES / "mailchimp_subscribed.csv").read_text().splitlines()[1].split(",")[0].strip('"')
    out = subscribe(newsletter, staying_out, status=S.UNSUBSCRIBED)
    run_import(FIXTURES / "mailchimp_unsubscribed.csv", "zine")
    run_import(FIXTURES / "mailchimp_subscribed.csv", "zine")
    here.refresh_from_db()
    out.refresh_from_db()
    assert here.status == S.UNSUBSCRIBED
    event = here.events.get()
    assert (event.kind, event.actor, event.from_status, event.to_status) == ("unsubscribe", "import", "active",
                                                                           "unsubscribed")
    assert out.status == S.UNSUBSCRIBED and not out.events.exists()


@pytest.mark.django_db
def test_a_paid_row_raises_the_tier_of_a_free_subscription_here(make_creator, subscribe):
    _, newsletter = make_creator("zine")
    text = (FIXTURES / "ghost.csv").read_text()
    jonas = next(line for line in text.splitlines() if "jonas.weber" in line)
    email = next(cell for cell in jonas.split(",") if "@" in cell)
    subscription = subscribe(newsletter, email, status=S.ACTIVE)
    run_import(FIXTURES / "ghost.csv", "zine")
    subscription.refresh_from_db()
    assert subscription.tier == "paid"
    assert subscription.events.get().kind == "tier"


@pytest.mark.django_db
def test_bom_crlf_quoted_newlines_and_extra_columns_with_line_numbers_in_the_report(make_creator, tmp_path):
    _, newsletter = make_creator("zine")
    path = tmp_path / "members.csv"
    path.write_bytes(
        "\ufeffid,email,name,note,subscribed_to_emails,complimentary_plan,stripe_customer_id,created_at,"
        "deleted_at,labels,tiers,favourite_colour\r\n"
        "1,ana@example.org,\"Ana, the first\",\"two\r\nlines\",true,false,,2022-10-18T06:34:08.000Z,,,,blue\r\n"
        "2,not-an-address,Bob,,true,false,,2022-10-18T06:34:08.000Z,,,,red\r\n"
        "3,  Chi@Example.org ,Chi,,false,false,,2022-10-18T06:34:08.000Z,,,,green\r\n".encode()
    )
    counts, report = run_import(path, "zine")
    assert counts == {"active": 1, "suppressed": 1, "paid": 0, "rejected": 1}
    assert "members.csv:4:" in report  # the row after a two-line cell is on physical line 4
    names = dict(Subscriber.objects.values_list("email", "name"))
    assert names["ana@example.org"] == "Ana, the first"
    assert "Chi@Example.org" in names  # trimmed, its case kept


@pytest.mark.django_db
def test_an_erased_person_is_not_imported_again(make_creator):
    _, newsletter = make_creator("zine")
    text = (FIXTURES / "kit.csv").read_text()
    email = next(cell for cell in text.splitlines()[1].split(",") if "@" in cell)
    ErasedAddress.objects.create(digest=erased_digest(email.upper()), newsletter=None)
    counts, report = run_import(FIXTURES / "kit.csv", "zine")
    assert counts["rejected"] == 1 and "erased" in report
    assert not Subscriber.objects.filter(email__iexact=email).exists()


@pytest.mark.django_db
def test_active_rows_need_the_attestation_in_the_admin_path(make_creator):
    from portability import importing
    from portability.models import Import

    user, newsletter = make_creator("zine")
    job = Import.objects.create(newsletter=newsletter, created_by=user, file_name="kit.csv", attested=False)
    with open(FIXTURES / "kit.csv", "rb") as stream, pytest.raises(importing.ImportFailed, match="attest"):
        importing.run(job, stream)
    job.refresh_from_db()
    assert job.status == "failed" and "attest" in job.error
    assert not Subscription.objects.filter(newsletter=newsletter).exists()  # nothing half-written
    # A file with only people who left needs no attestation.
    job = Import.objects.create(newsletter=newsletter, created_by=user, file_name="c.csv", attested=False)
    with open(FIXTURES / "mailchimp_cleaned.csv", "rb") as stream:
        importing.run(job, stream)
    assert Subscription.objects.filter(newsletter=newsletter, status=S.BOUNCED).count() == 3


@pytest.mark.django_db
def test_a_file_that_is_no_export_gets_a_clear_error(make_creator, tmp_path):
    make_creator("zine")
    path = tmp_path / "notes.csv"
    path.write_text("colour,size\nred,3\n")
    with pytest.raises(CommandError) as error:
        run_import(path, "zine")
    assert "notes.csv" in str(error.value) and "header" in str(error.value).lower()
    with pytest.raises(CommandError, match="No newsletter"):
        run_import(FIXTURES / "kit.csv", "nope")


@pytest.mark.django_db(transaction=True)
def test_the_creator_uploads_a_file_and_a_worker_imports_it(make_creator, start_worker, settings, tmp_path, client):
    from portability.models import Import

    settings.MEDIA_ROOT = tmp_path / "media"
    user, newsletter = make_creator("zine")
    client.force_login(user)
    with start_worker(name="import", queues="default", MEDIA_ROOT=str(settings.MEDIA_ROOT)):
        with open(FIXTURES / "substack.csv", "rb") as upload:
            response = client.post("/admin/portability/import/add/", {
                "newsletter": newsletter.pk, "file": upload, "format": "auto", "attested": "on",
            })
        assert response.status_code == 302, response.content.decode()[:2000]
        job = Import.objects.get()
        deadline = time.monotonic() + 60
        while Import.objects.get().status not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
    job.refresh_from_db()
    assert job.status == "done", job.error
    assert job.counts() == EXPECTED["substack.csv"] and job.created_by == user
    page = client.get(f"/admin/portability/import/{job.pk}/change/").content.decode()
    assert 'value="100"' in page and "line " in page  # the full bar and the rejected row with its line
    progress = client.get(f"/admin/portability/import/{job.pk}/progress.json").json()
    assert progress["status"] == "done" and progress["counts"]["active"] == 9
    report = client.get(f"/admin/portability/import/{job.pk}/report.csv")
    assert b"deletion-request" in b"".join(report.streaming_content)
    event = SubscriptionEvent.objects.filter(subscription__newsletter=newsletter, to_status="active").first()
    assert event.actor_user == user and user.get_username() in event.consent_text


@pytest.mark.django_db
def test_a_creator_sees_only_their_own_imports(make_creator, client):
    from portability.models import Import

    user_a, alpha = make_creator("alpha")
    user_b, _ = make_creator("beta")
    job = Import.objects.create(newsletter=alpha, created_by=user_a, file_name="secret-list.csv", attested=True)
    client.force_login(user_b)
    assert "secret-list.csv" not in client.get("/admin/portability/import/").content.decode()
    assert client.get(f"/admin/portability/import/{job.pk}/change/").status_code in (302, 404)
    assert client.get(f"/admin/portability/import/{job.pk}/progress.json").status_code == 404
    assert client.get(f"/admin/portability/import/{job.pk}/report.csv").status_code == 404
