"""Paid content as each reader meets it: the email a free reader and a member get of an issue with
a paywall marker, its web page for visitors and logged-in members, the feed, and who a paid-only
issue reaches."""

import xml.etree.ElementTree as ET

import pytest

from delivery import engine
from newsletters import rendering
from newsletters.models import Issue
from ownedaudience import links
from subscribers.models import Subscription

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
T = Subscription.Tier

FREE_PART = "Hello {{ name }},\n\nThis week: **three tips** for glazing."
SECRET = "The secret glaze is ash and feldspar."
BODY = f"{FREE_PART}\n\n<!-- paywall -->\n\n{SECRET}\n\nSee you next week."
THANKS = "Thank you for being a paying member."
UPGRADE = "The rest of this issue is for paying members."
PAGE = "/zine/issues/issue-one/"


@pytest.fixture
def no_kick(monkeypatch):
    """The test drives the batches itself (as tests/test_send_engine.py does)."""
    monkeypatch.setattr(engine.chains, "kick", lambda *args, **kwargs: None)


@pytest.fixture
def readers(ready_issue, subscribe):
    """A paywalled issue for everyone and a list with one free reader, one paying and one comped member."""
    issue, _ = ready_issue(n=0, body=BODY)
    for tier in (T.FREE, T.PAID, T.COMPED):
        subscribe(issue.newsletter, f"{tier}@fans.example", tier=tier)
    return issue


def send(issue, transport_settings, url):
    """Send the issue to its whole audience through the send engine, to the end."""
    transport_settings(url)
    engine.start_send(issue.pk)
    for _ in range(100):
        if engine.send_next_batch(issue.pk, "w1")[0] != "again":
            break
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENT


def received(smtp_sink, email):
    """(html, text) of the one copy `email` got."""
    [copy] = smtp_sink.to(email)
    return copy.message.get_body(("html",)).get_content(), copy.message.get_body(("plain",)).get_content()


def member_login(client, django_user_model, email):
    """A visitor logged in with `email`, as member login leaves them."""
    client.force_login(django_user_model.objects.create_user(username=email, email=email))


# --- email ----------------------------------------------------------------------------------


def test_free_readers_get_the_part_above_the_paywall_and_members_all_of_it(readers, no_kick, transport_settings,
                                                                         smtp_sink):
    issue = readers
    send(issue, transport_settings, smtp_sink.url)
    plans = links.page(issue.newsletter) + "#plans"

    html, text = received(smtp_sink, "free@fans.example")
    for part in (html, text):
        assert "three tips" in part and UPGRADE in part
        assert SECRET not in part and "See you next week" not in part
        assert THANKS not in part and "paywall" not in part
    assert f'href="{plans}"' in html and ">Become a member</a>" in html
    assert f"Become a member: {plans}" in text

    for tier in (T.PAID, T.COMPED):
        html, text = received(smtp_sink, f"{tier}@fans.example")
        for part in (html, text):
            assert "three tips" in part and SECRET in part and "See you next week" in part
            assert THANKS in part
            assert UPGRADE not in part and "Become a member" not in part and "paywall" not in part


def test_an_issue_without_a_marker_reads_the_same_for_free_readers(ready_issue):
    issue, _ = ready_issue(n=0, body=f"{FREE_PART}\n\n{SECRET}")
    html, text = rendering.render_issue(issue, "free")
    for part in (html, text):
        assert SECRET in part and UPGRADE not in part and THANKS not in part


def test_the_invitation_speaks_the_newsletters_language(readers):
    issue = readers
    issue.newsletter.language = "vi"
    html, text = rendering.render_issue(issue, "free")
    for part in (html, text):
        assert "Phần còn lại của số này dành cho thành viên trả phí." in part and "Trở thành thành viên" in part
        assert UPGRADE not in part and SECRET not in part


@pytest.mark.parametrize("marker", ["<!-- paywall -->", "<!--members-only-->", "  <!--   PayWall  -->\t",
                                    "<!-- MEMBERS-ONLY -->"])
def test_the_marker_may_be_spelled_as_ghost_does_in_any_case_and_spacing(ready_issue, marker):
    issue, _ = ready_issue(n=0, body=f"{FREE_PART}\r\n{marker}\r\n{SECRET}")
    free, paid = rendering.render_issue(issue, "free"), rendering.render_issue(issue, "paid")
    assert all(SECRET not in part and UPGRADE in part for part in free)
    assert all(SECRET in part and marker.strip() not in part for part in paid)


def test_the_first_of_two_markers_counts_and_members_see_neither(ready_issue):
    issue, _ = ready_issue(n=0, body=f"{FREE_PART}\n\n<!-- paywall -->\n\n{SECRET}\n\n<!-- paywall -->\n\nMore.")
    assert rendering.split_paywall(issue.body_markdown) == (FREE_PART, True)
    html, text = rendering.render_issue(issue, "paid")
    assert SECRET in text and "More." in text and "<!--" not in text and "<!--" not in html


def test_a_marker_in_a_paid_only_issue_stops_nothing(ready_issue):
    issue, _ = ready_issue(n=0, body=BODY)
    issue.audience = Issue.Audience.PAID
    assert rendering.issue_problems(issue) == []
    assert engine.audience_variants(issue) == ["paid"]
    html, text = rendering.render_issue(issue, "paid")
    assert SECRET in html and SECRET in text and UPGRADE not in text


# --- who a send reaches -----------------------------------------------------------------------


def test_a_paid_only_send_reaches_paying_and_comped_members_only(readers, no_kick, transport_settings, smtp_sink):
    issue = readers
    issue.audience = Issue.Audience.PAID
    issue.save()
    send(issue, transport_settings, smtp_sink.url)
    assert not smtp_sink.to("free@fans.example")
    for tier in (T.PAID, T.COMPED):
        html, text = received(smtp_sink, f"{tier}@fans.example")
        assert SECRET in html and SECRET in text and THANKS in text
    assert len(smtp_sink.messages) == 2


# --- the web page ---------------------------------------------------------------------------


@pytest.fixture
def sent(readers, no_kick, transport_settings):
    """The paywalled issue, sent: its stored web version holds the whole body."""
    issue = readers
    send(issue, transport_settings, "discard://")
    return issue


def page(client):
    response = client.get(PAGE)
    assert response.status_code == 200
    return response, response.content.decode()


def assert_cut(client, issue):
    response, html = page(client)
    assert "three tips" in html and UPGRADE in html
    assert f'href="{links.page(issue.newsletter)}#plans"' in html
    assert SECRET not in html and "See you next week" not in html and "ash and feldspar" not in html
    assert "private" in response["Cache-Control"] and "Cookie" in response["Vary"]


def assert_whole(client):
    response, html = page(client)
    assert "three tips" in html and SECRET in html and "See you next week" in html
    assert UPGRADE not in html and "Become a member" not in html
    assert "private" in response["Cache-Control"]


def test_an_anonymous_visitor_reads_the_part_above_the_paywall(client, sent):
    assert_cut(client, sent)


def test_a_logged_in_free_reader_reads_the_part_above_the_paywall(client, sent, django_user_model):
    member_login(client, django_user_model, "free@fans.example")
    assert_cut(client, sent)


def test_a_member_of_another_newsletter_reads_the_part_above_the_paywall(client, sent, make_creator, subscribe,
                                                                         django_user_model):
    _, other = make_creator("other")
    subscribe(other, "patron@fans.example", tier=T.PAID)
    member_login(client, django_user_model, "patron@fans.example")
    assert_cut(client, sent)


@pytest.mark.parametrize("email", ["paid@fans.example", "Comped@Fans.example"])
def test_a_logged_in_member_reads_all_of_it(client, sent, django_user_model, email):
    member_login(client, django_user_model, email)
    assert_whole(client)


def test_a_paid_only_issue_shows_non_members_a_notice_and_members_the_body(client, readers, no_kick,
                                                                          transport_settings, django_user_model):
    issue = readers
    issue.audience = Issue.Audience.PAID
    issue.save()
    send(issue, transport_settings, "discard://")

    response, html = page(client)
    assert "This issue is for paying members." in html and "Become a member" in html
    assert f'href="{links.page(issue.newsletter)}#plans"' in html
    assert "three tips" in html and SECRET not in html  # the part above the marker is its teaser
    assert "private" in response["Cache-Control"] and "Cookie" in response["Vary"]

    member_login(client, django_user_model, "free@fans.example")
    assert SECRET not in page(client)[1]

    client.logout()
    member_login(client, django_user_model, "comped@fans.example")
    html = page(client)[1]
    assert "three tips" in html and SECRET in html and "This issue is for paying members." not in html

    client.logout()  # without a marker, a paid-only issue shows non-members nothing of its body
    Issue.objects.filter(pk=issue.pk).update(body_markdown=BODY.replace("<!-- paywall -->", ""))
    html = page(client)[1]
    assert "three tips" not in html and SECRET not in html and "This issue is for paying members." in html


def test_the_page_speaks_the_newsletters_language(client, sent):
    sent.newsletter.language = "vi"
    sent.newsletter.save()
    html = page(client)[1]
    assert "Phần còn lại của số này dành cho thành viên trả phí." in html and "Trở thành thành viên" in html


# --- the feed -------------------------------------------------------------------------------


def feed_descriptions(client):
    feed = client.get("/zine/feed.xml")
    assert feed.status_code == 200
    return {item.findtext("title"): item.findtext("description") for item in ET.fromstring(feed.content).iter("item")}


def test_the_feed_carries_only_the_part_above_the_paywall(client, sent):
    Issue.objects.create(newsletter=sent.newsletter, title="For members", slug="for-members", body_markdown=SECRET,
                         audience=Issue.Audience.PAID, status=Issue.Status.SENT, sent_at=sent.sent_at)
    descriptions = feed_descriptions(client)
    assert "three tips" in descriptions["Issue one"] and SECRET not in descriptions["Issue one"]
    assert "See you next week" not in descriptions["Issue one"]
    assert not descriptions["For members"]
