"""Two creators on one installation: the admin's filters, searches, autocompletes, raw-id lookups
and form choices show each of them only their own newsletters, issues and fans.

Everything of creator A carries the word "aardvark" (names, titles, addresses, links, outbox
mail), everything of creator B "bumblebee": a page B sees must not contain "aardvark" anywhere,
its filter sidebar included.
"""

import json
import re

import pytest
from django.contrib import admin
from django.contrib.admin import RelatedFieldListFilter, RelatedOnlyFieldListFilter
from django.urls import reverse

from delivery.models import Delivery, OutboxMessage
from newsletters.models import Issue, Newsletter, SocialLink
from newsletters.services import newsletter_create
from ownedaudience.scoping import CreatorScoped, CreatorScopedAdmin
from subscribers.models import OwedEmail, SourceLink, Subscriber, Subscription

pytestmark = pytest.mark.django_db

A, B = "aardvark", "bumblebee"


def _creator(make_creator, subscribe, word):
    user, gazette = make_creator(f"{word}-gazette", f"{word}@creators.example")
    extra, _ = newsletter_create(slug=f"{word}-extra", name=f"{word.title()}-Extra", owner=user)
    draft = Issue.objects.create(newsletter=gazette, title=f"{word.title()} draft: secret merger plans",
                                 slug="draft")
    sent = Issue.objects.create(newsletter=extra, title=f"{word.title()} sent issue", slug="sent",
                                status=Issue.Status.SENT)
    one = subscribe(gazette, f"fan.one@{word}.example", source=f"{word}-tiktok")
    two = subscribe(extra, f"fan.two@{word}.example", source=f"{word}-instagram")
    for subscription in (one, two):
        Delivery.objects.create(issue=sent, subscriber=subscription.subscriber, status=Delivery.Status.SENT)
        OwedEmail.objects.create(subscription=subscription, kind=OwedEmail.Kind.CONFIRMATION)
    SocialLink.objects.create(newsletter=gazette, label=f"{word}-socials", url=f"https://{word}.example/social")
    SourceLink.objects.create(newsletter=gazette, source=f"{word}-bio", code=f"{word}-bio")
    outbox = OutboxMessage.objects.create(
        mailer=f"{word}-mailer", newsletter=gazette, newsletter_slug=gazette.slug, from_email=f"news@{word}.example",
        to=one.subscriber.email, subject=f"{word.title()} outbox subject", raw=b"",
    )
    return {"user": user, "gazette": gazette, "extra": extra, "draft": draft, "sent": sent,
            "one": one, "two": two, "outbox": outbox}


@pytest.fixture
def creators(make_creator, subscribe, client):
    data = {A: _creator(make_creator, subscribe, A), B: _creator(make_creator, subscribe, B)}
    client.force_login(data[B]["user"])
    return data


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


def changelist(model):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def add_url(model):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")


def change_url(obj):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def sidebar(page):
    """The changelist's filter sidebar, or "" when the page has none."""
    match = re.search(r'<search id="changelist-filter".*?</search>', page, re.DOTALL)
    return match.group(0) if match else ""


def options(page, name):
    """The labels of a <select name=...>'s options, the empty choice left out."""
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', page, re.DOTALL)
    assert select, f"no <select name={name!r}> on the page"
    return {label for value, label in re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select.group(1))
            if value}


def get(client, url):
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def assert_nothing_of_a(page, url):
    assert A not in page.lower(), f"{url} shows creator A's data: ...{page[max(0, page.lower().index(A) - 200):][:400]}..."


CHANGELISTS = [Newsletter, Issue, Delivery, Subscription, Subscriber, OwedEmail, OutboxMessage]


@pytest.mark.parametrize("model", CHANGELISTS, ids=lambda m: m._meta.model_name)
@pytest.mark.parametrize("query", ["", "?_facets=1", "?q=fan", "?_to_field=id&_popup=1"],
                         ids=["list", "facets", "search", "raw-id-popup"])
def test_changelists_show_nothing_of_another_creator(client, creators, model, query):
    url = changelist(model) + query
    page = get(client, url)
    assert_nothing_of_a(page, url)
    assert B in page.lower()  # the page lists B's own rows: it is not empty by accident


@pytest.mark.parametrize(
    "model, lookup, key",
    [
        (Issue, "newsletter__id__exact", "gazette"),
        (Subscription, "newsletter__id__exact", "gazette"),
        (Delivery, "issue__id__exact", "sent"),
    ],
)
def test_filtering_by_another_creators_object_shows_nothing_of_it(client, creators, model, lookup, key):
    url = f"{changelist(model)}?{lookup}={creators[A][key].pk}"
    assert_nothing_of_a(get(client, url), url)


# What each filter sidebar must list for a creator: their own newsletters, issues, sources, mailers.
OWN_FILTER_CHOICES = {
    Issue: lambda w: [f"{w.title()}-Gazette", f"{w.title()}-Extra"],
    Subscription: lambda w: [f"{w.title()}-Gazette", f"{w.title()}-Extra", f"{w}-tiktok", f"{w}-instagram"],
    Delivery: lambda w: [f"{w.title()} draft: secret merger plans", f"{w.title()} sent issue"],
    OutboxMessage: lambda w: [f"{w}-mailer"],
}


@pytest.mark.parametrize("model", OWN_FILTER_CHOICES, ids=lambda m: m._meta.model_name)
@pytest.mark.parametrize("word", [A, B])
def test_filters_list_the_creators_own_objects_and_nobody_elses(client, creators, model, word):
    other = B if word == A else A
    client.force_login(creators[word]["user"])
    filters = sidebar(get(client, changelist(model)))
    for choice in OWN_FILTER_CHOICES[model](word):
        assert choice in filters
    assert other not in filters.lower()


@pytest.mark.parametrize("model", OWN_FILTER_CHOICES, ids=lambda m: m._meta.model_name)
def test_a_superusers_filters_list_everyone(client, creators, root, model):
    client.force_login(root)
    filters = sidebar(get(client, changelist(model)))
    for word in (A, B):
        for choice in OWN_FILTER_CHOICES[model](word):
            assert choice in filters


def test_add_and_change_forms_offer_only_the_creators_own_choices(client, creators):
    mine = creators[B]
    own_newsletters = {"Bumblebee-Gazette", "Bumblebee-Extra"}
    for url in [add_url(Issue), add_url(Subscription), change_url(mine["draft"])]:
        page = get(client, url)
        assert_nothing_of_a(page, url)
        assert options(page, "newsletter") == own_newsletters
    for url in [add_url(Newsletter), change_url(mine["gazette"]), change_url(mine["sent"]),
                change_url(mine["one"]), change_url(mine["one"].subscriber)]:
        assert_nothing_of_a(get(client, url), url)
    page = get(client, change_url(mine["gazette"]))
    assert "bumblebee-socials" in page and "bumblebee-bio" in page  # its inlines


def test_another_creators_outbox_message_answers_404(client, creators):
    assert client.get(change_url(creators[A]["outbox"])).status_code == 404
    assert client.get(change_url(creators[B]["outbox"])).status_code == 200


def test_a_shared_fan_cannot_be_probed_for_other_lists(client, creators, subscribe, root):
    """`?subscriptions=<id>` on the subscriber list would answer whether a fan of B's also holds
    subscription <id>, one of A's: such lookups through a reverse relation are refused."""
    shared = subscribe(creators[A]["gazette"], "fan.one@bumblebee.example")
    for probe in [f"subscriptions={shared.pk}", f"subscriptions__id={shared.pk}",
                  f"subscriptions__newsletter={creators[A]['gazette'].pk}", f"deliveries__issue={creators[A]['sent'].pk}"]:
        response = client.get(f"{changelist(Subscriber)}?{probe}")
        assert response.status_code == 400, probe
    client.force_login(root)
    assert "fan.one@bumblebee.example" in get(client, f"{changelist(Subscriber)}?subscriptions={shared.pk}")


# Every foreign key the autocomplete view answers for (the target's admin has search_fields).
AUTOCOMPLETES = [
    ("newsletters", "issue", "newsletter"),
    ("newsletters", "sociallink", "newsletter"),
    ("subscribers", "sourcelink", "newsletter"),
    ("subscribers", "subscription", "newsletter"),
    ("subscribers", "subscription", "subscriber"),
    ("delivery", "delivery", "issue"),
    ("delivery", "delivery", "subscriber"),
    ("subscribers", "owedemail", "subscription"),
]


@pytest.mark.parametrize("app_label, model_name, field_name", AUTOCOMPLETES)
@pytest.mark.parametrize("word", [A, B])
def test_autocomplete_answers_only_the_creators_own_objects(client, creators, app_label, model_name, field_name,
                                                           word):
    other = B if word == A else A
    client.force_login(creators[word]["user"])

    def texts(term):
        url = (f"{reverse('admin:autocomplete')}?app_label={app_label}&model_name={model_name}"
               f"&field_name={field_name}&term={term}")
        response = client.get(url)
        assert response.status_code == 200
        return [result["text"] for result in json.loads(response.content)["results"]]

    everything = texts("")
    assert everything and all(word in text.lower() for text in everything), everything
    assert texts(other[:5]) == []  # a search for the other creator's things finds nothing
    assert texts(word[:5])  # and one for the creator's own does


def test_autocomplete_of_logins_is_closed_to_creators(client, creators):
    url = f"{reverse('admin:autocomplete')}?app_label=newsletters&model_name=newsletter&field_name=owners"
    assert client.get(url).status_code == 403


# The same rule holds for filters, raw-id and autocomplete widgets an admin may gain later.


@pytest.mark.parametrize(
    "list_filter",
    [
        ("subscription",),
        ("subscription__newsletter",),
        ("subscription__subscriber",),
        ("subscription__newsletter__name",),
        (("subscription__newsletter", RelatedFieldListFilter),),
        (("subscription__newsletter", RelatedOnlyFieldListFilter),),
    ],
    ids=["fk", "path-to-fk", "path-to-shared-fk", "path-to-value", "related-filter", "related-only-filter"],
)
def test_any_relation_filter_lists_only_the_creators_own_objects(client, creators, monkeypatch, list_filter):
    monkeypatch.setattr(admin.site.get_model_admin(OwedEmail), "list_filter", list_filter)
    filters = sidebar(get(client, changelist(OwedEmail)))
    assert B in filters.lower()
    assert A not in filters.lower()


def test_a_raw_id_field_names_only_the_creators_own_object(client, creators, monkeypatch):
    monkeypatch.setattr(admin.site.get_model_admin(Issue), "raw_id_fields", ("newsletter",))
    page = get(client, f"{add_url(Issue)}?newsletter={creators[A]['gazette'].pk}")
    assert_nothing_of_a(page, "issue add form with a raw-id newsletter")
    page = get(client, f"{add_url(Issue)}?newsletter={creators[B]['gazette'].pk}")
    assert "Bumblebee-Gazette" in page


def test_every_foreign_key_choice_is_scoped_not_only_newsletter(client, creators, monkeypatch):
    subscription_admin = admin.site.get_model_admin(Subscription)
    editable = tuple(f for f in subscription_admin.readonly_fields if f != "subscriber")
    monkeypatch.setattr(subscription_admin, "get_readonly_fields", lambda request, obj=None: editable)
    page = get(client, change_url(creators[B]["one"]))
    assert options(page, "subscriber") == {"fan.one@bumblebee.example", "fan.two@bumblebee.example"}
    assert_nothing_of_a(page, "subscription change form with the subscriber editable")


def test_an_autocomplete_widget_offers_only_the_creators_own_objects(client, creators, monkeypatch):
    monkeypatch.setattr(admin.site.get_model_admin(Issue), "autocomplete_fields", ("newsletter",))
    page = get(client, f"{add_url(Issue)}?newsletter={creators[A]['gazette'].pk}")
    assert_nothing_of_a(page, "issue add form with an autocomplete newsletter")
    page = get(client, f"{add_url(Issue)}?newsletter={creators[B]['gazette'].pk}")
    assert "Bumblebee-Gazette" in page


def test_every_admin_a_creator_can_open_goes_through_the_ownership_rule(creators, rf):
    request = rf.get("/admin/")
    request.user = creators[B]["user"]
    for model_admin in admin.site._registry.values():
        if not model_admin.has_view_permission(request):
            continue
        assert isinstance(model_admin, CreatorScopedAdmin), f"{type(model_admin).__name__} is not scoped"
        for inline in model_admin.get_inline_instances(request):
            assert isinstance(inline, CreatorScoped), f"{type(inline).__name__} is not scoped"
