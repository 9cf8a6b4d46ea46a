"""Leaving with everything: a newsletter's export zip, and the round trip that puts it back.

Export, then delete the newsletter, its subscribers and their suppressions and the image (an
empty installation as far as this newsletter goes), then restore under the same slug: the same
audience, the same history, the same archive, the images back. A second test restores under a
new slug beside the original (shared subscriber rows) and checks the refusals.
"""

import csv
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.http import Http404
from django.test import RequestFactory

from delivery.models import Delivery
from newsletters.models import Issue, Newsletter, SocialLink
from portability.export_views import export_download
from portability.exporting import SUBSCRIBER_HEADER
from subscribers import selectors, services
from subscribers.models import SourceLink, Subscriber, Subscription, SubscriptionEvent, Suppression

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

S, T, K = Subscription.Status, Subscription.Tier, SubscriptionEvent.Kind
TRICKY_NAME = 'Phạm, "Thu"\nHà'
TRICKY_CONSENT = 'I agree, "yes",\nand a second line; 100% sure'


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    (settings.MEDIA_ROOT / "issues").mkdir(parents=True)
    (settings.MEDIA_ROOT / "issues" / "field photo.png").write_bytes(b"\x89PNG fake image bytes")
    return settings.MEDIA_ROOT


def sign_up(newsletter, email, *, name="", source="page", consent="I want the letters.", ip="203.0.113.7"):
    subscription_id, _ = services.signup(newsletter=newsletter, email=email, name=name, source=source,
                                         consent_text=consent, ip=ip, user_agent="Firefox/140.0")
    return subscription_id


@pytest.fixture
def garden(make_creator, media, settings):
    """A newsletter with every status and tier, a history, a suppressed fan, a sent issue with an
    image and its deliveries, and a draft."""
    user, news = make_creator("garden")
    Newsletter.objects.filter(pk=news.pk).update(
        description="Letters about growing things.", sender_name="Mai", sender_email="mai@garden.example",
        reply_to="reply@garden.example", postal_address="1 Letter Lane\nHanoi", language="vi",
        avatar_url="https://cdn.example/mai.png", consent_text="Yes, send me the garden letters.",
        welcome_subject="Welcome", welcome_body="Hello!\n\nGlad you came.", blocked_domains="spam.example",
    )
    news.refresh_from_db()
    SocialLink.objects.create(newsletter=news, label="TikTok", url="https://tiktok.com/@mai", position=1)
    SocialLink.objects.create(newsletter=news, label="Site", url="https://mai.example", position=2)
    SourceLink.objects.create(newsletter=news, source="tiktok", code="tt")

    sign_up(news, "pending@fans.example", name=TRICKY_NAME, consent=TRICKY_CONSENT, source="tiktok")
    active = sign_up(news, "Active.Free@Fans.example", ip="2001:db8::7")
    paid = sign_up(news, "paid@fans.example")
    comped = sign_up(news, "comped@fans.example")
    left = sign_up(news, "left@fans.example", name="Left, Early")
    bounced = sign_up(news, "bounced@fans.example")
    complained = sign_up(news, "complained@fans.example")
    suppressed = sign_up(news, "suppressed@fans.example")
    for subscription_id in (active, paid, comped, left, bounced, complained, suppressed):
        services.subscription_confirm(subscription_id=subscription_id)
    services.subscription_change(paid, kind=K.TIER, actor="creator", actor_user=user, tier=T.PAID,
                                 detail="upgraded by hand")
    services.subscription_change(comped, kind=K.TIER, actor="system", tier=T.COMPED)
    services.subscription_unsubscribe(subscription_id=left, detail="one-click (RFC 8058)")
    services.subscription_change(bounced, kind=K.BOUNCE, actor="system", status=S.BOUNCED, detail="550 5.1.1")
    services.subscription_change(complained, kind=K.COMPLAINT, actor="system", status=S.COMPLAINED)
    Suppression.objects.create(email="suppressed@fans.example", reason="bounce", detail="hard bounce elsewhere")

    site = settings.SITE_URL
    sent = Issue.objects.create(
        newsletter=news, title="Issue one: seeds", slug="issue-one", status=Issue.Status.SENT,
        sent_at=datetime(2024, 3, 5, 9, 0, 3, 512000, tzinfo=UTC),
        body_markdown=("Hello {{ name }},\n\n![A field](/media/issues/field%20photo.png)\n\n"
                       f"<img src=\"{site}/media/issues/field%20photo.png\">\n\n"
                       "![Elsewhere](https://cdn.example/media/other.png)\n"),
    )
    draft = Issue.objects.create(newsletter=news, title="Draft: June", slug="draft-june", body_markdown="Soon.",
                                 audience=Issue.Audience.PAID, show_on_web=False)
    Issue.objects.filter(pk=sent.pk).update(created_at=datetime(2024, 3, 1, 8, 0, tzinfo=UTC))
    Issue.objects.filter(pk=draft.pk).update(created_at=datetime(2024, 5, 1, 8, 0, tzinfo=UTC))
    for subscription, status in zip(Subscription.objects.filter(status=S.ACTIVE).order_by("id"),
                                    ["sent", "sent", "failed", "unknown"]):
        Delivery.objects.create(issue=sent, subscriber=subscription.subscriber, status=status)
    return user, news


def state(slug):
    """Everything the round trip must keep, by address (ids differ after a restore)."""
    news = Newsletter.objects.get(slug=slug)
    subscriptions = sorted(Subscription.objects.filter(newsletter=news).values_list(
        "subscriber__email", "subscriber__name", "status", "tier", "source", "created_at", "confirmed_at",
        "unsubscribed_at", "consent_form", "consent_text", "consent_at", "consent_ip", "consent_user_agent"))
    events = list(SubscriptionEvent.objects.filter(subscription__newsletter=news).order_by(
        "subscription__subscriber__email", "at", "id").values_list(
        "subscription__subscriber__email", "kind", "at", "from_status", "to_status", "from_tier", "to_tier",
        "actor", "actor_user__username", "detail", "consent_form", "consent_text", "consent_at", "consent_ip",
        "consent_user_agent"))
    issues = sorted(news.issues.values_list("title", "slug", "body_markdown", "status", "audience", "show_on_web",
                                            "scheduled_at", "sent_at", "created_at"))
    settings = {name: getattr(news, name) for name in (
        "name", "description", "language", "sender_name", "sender_email", "reply_to", "postal_address",
        "avatar_url", "consent_text", "welcome_subject", "welcome_body", "blocked_domains", "created_at")}
    return {
        "audience": sorted(selectors.audience(news.pk).values_list("subscriber__email", flat=True)),
        "paid audience": sorted(selectors.audience(news.pk, paid_only=True).values_list("subscriber__email", flat=True)),
        "subscriptions": subscriptions, "events": events, "issues": issues, "settings": settings,
        "social": list(news.social_links.values_list("label", "url", "position")),
        "sources": list(news.source_links.values_list("source", "code")),
        "owners": list(news.owners.values_list("username", flat=True)),
    }


def export(slug, path):
    out = io.StringIO()
    call_command("export_newsletter", slug, str(path), stdout=out)
    return json.loads(out.getvalue())


def read_csv(zf, name):
    return list(csv.reader(io.TextIOWrapper(zf.open(name), encoding="utf-8", newline="")))


def test_export_then_restore_into_an_empty_installation_gives_the_same_audience_and_archive(
    garden, media, tmp_path, client
):
    user, news = garden
    before = state("garden")
    assert before["audience"] == ["Active.Free@Fans.example", "comped@fans.example", "paid@fans.example"]
    assert {row[2] for row in before["subscriptions"]} == set(S.values)
    assert {row[3] for row in before["subscriptions"]} == set(T.values)
    path = tmp_path / "garden.zip"

    counts = export("garden", path)
    assert counts["subscribers"] == 8 and counts["events"] == len(before["events"]) == 20
    assert (counts["issues"], counts["images"]) == (2, 1)

    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert {"newsletter.json", "subscribers.csv", "events.csv", "deliveries.csv", "suppressions.csv",
                "issues/2024-03-05-issue-one.md", "issues/2024-05-01-draft-june.md",
                "images/issues/field photo.png"} <= names
        header = ("email,name,status,tier,source,created_at,confirmed_at,unsubscribed_at,"
                  "consent_form,consent_text,consent_at,consent_ip,consent_user_agent")
        assert zf.read("subscribers.csv").decode().split("\n", 1)[0] == header == ",".join(SUBSCRIBER_HEADER)
        assert read_csv(zf, "events.csv")[0][-1] == "actor_user"
        subscribers = read_csv(zf, "subscribers.csv")
        pending = next(row for row in subscribers if row[0] == "pending@fans.example")
        assert pending[1] == TRICKY_NAME and pending[9] == TRICKY_CONSENT
        assert next(row for row in subscribers if row[0] == "Active.Free@Fans.example")[11] == "2001:db8::7"
        assert read_csv(zf, "deliveries.csv") == [
            ["slug", "status", "recipients", "sent", "failed", "unknown", "skipped", "pending"],
            ["issue-one", "sent", "4", "2", "1", "1", "0", "0"],
            ["draft-june", "draft", "0", "0", "0", "0", "0", "0"],
        ]
        meta = json.loads(zf.read("newsletter.json"))
        assert meta["format_version"] == 1 and meta["slug"] == "garden" and len(meta["social_links"]) == 2
        issue_file = zf.read("issues/2024-03-05-issue-one.md").decode()
        assert issue_file.startswith('---\ntitle: "Issue one: seeds"\nslug: "issue-one"\nstatus: "sent"\n')
        assert 'sent_at: "2024-03-05T09:00:03.512Z"\n' in issue_file

    # An empty installation, as far as this newsletter goes: nothing of it is left.
    emails = [row[0] for row in before["subscriptions"]]
    Newsletter.objects.filter(pk=news.pk).delete()
    Subscriber.objects.filter(email__in=emails).delete()
    Suppression.objects.all().delete()
    (media / "issues" / "field photo.png").unlink()
    assert not Subscription.objects.exists() and not SubscriptionEvent.objects.exists()

    out = io.StringIO()
    call_command("import_newsletter", str(path), owner=user.username, stdout=out)
    restored = json.loads(out.getvalue())
    assert (restored["subscriptions"], restored["events"], restored["issues"], restored["images"]) == (8, 20, 2, 1)

    assert state("garden") == before
    assert (media / "issues" / "field photo.png").read_bytes() == b"\x89PNG fake image bytes"
    assert not Delivery.objects.exists()  # the summary is informational: no ledger invented
    archive = client.get("/garden/issues/").content.decode()
    assert "Issue one: seeds" in archive and "Draft: June" not in archive
    assert "Issue one: seeds" in client.get("/garden/").content.decode()


def test_restore_under_a_new_slug_beside_the_original_and_the_refusals(garden, tmp_path):
    path = tmp_path / "garden.zip"
    export("garden", path)
    before = state("garden")

    with pytest.raises(CommandError, match="exists already"):
        call_command("import_newsletter", str(path), stdout=io.StringIO())
    call_command("import_newsletter", str(path), slug="garden-two", stdout=io.StringIO())
    copy = state("garden-two")
    assert copy == {**before, "owners": []}  # no --owner given
    assert Subscriber.objects.count() == 8  # the same people, not new rows for them

    future = tmp_path / "future.zip"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(future, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "newsletter.json":
                data = json.dumps({**json.loads(data), "format_version": 2}).encode()
            target.writestr(name, data)
    with pytest.raises(CommandError, match="format_version 2"):
        call_command("import_newsletter", str(future), slug="garden-three", stdout=io.StringIO())
    assert not Newsletter.objects.filter(slug="garden-three").exists()


def test_one_click_export_answers_the_owner_a_zip_and_anyone_else_404(garden, make_creator, django_user_model):
    user, news = garden
    request = RequestFactory().get(f"/admin/newsletters/newsletter/{news.pk}/export/")
    request.user = user
    response = export_download(request, news.pk)
    today = (datetime.now(UTC)).date()
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] in (
        f'attachment; filename="garden-{day:%Y-%m-%d}.zip"' for day in (today, today - timedelta(days=1),
                                                                       today + timedelta(days=1)))
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as zf:
        assert json.loads(zf.read("newsletter.json"))["slug"] == "garden"
        assert len(read_csv(zf, "subscribers.csv")) == 9
    response.file_to_stream.close()  # response.close() would signal request_finished, which closes the test's connection

    other, _ = make_creator("other")
    request.user = other
    with pytest.raises(Http404):
        export_download(request, news.pk)
    request.user = django_user_model.objects.create_user("fan", "fan@example.org", "pw")  # not staff
    with pytest.raises(Http404):
        export_download(request, news.pk)
    request.user = django_user_model.objects.create_superuser("root", "root@example.org", "pw")
    assert export_download(request, news.pk).status_code == 200


def test_the_admin_export_page_lists_the_creators_newsletters_and_downloads_the_zip(garden, make_creator, client):
    user, news = garden
    other, other_news = make_creator("other")
    client.force_login(user)
    listing = client.get("/admin/portability/import/")
    assert listing.status_code == 200 and "/admin/portability/import/export/" in listing.content.decode()
    page = client.get("/admin/portability/import/export/")
    body = page.content.decode()
    assert page.status_code == 200
    assert f"/admin/portability/import/export/{news.pk}.zip" in body
    assert f"/admin/portability/import/export/{other_news.pk}.zip" not in body
    response = client.get(f"/admin/portability/import/export/{news.pk}.zip")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as zf:
        assert {"newsletter.json", "subscribers.csv", "events.csv"} <= set(zf.namelist())
    assert client.get(f"/admin/portability/import/export/{other_news.pk}.zip").status_code == 404
