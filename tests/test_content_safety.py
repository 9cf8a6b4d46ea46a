"""What a creator saves cannot break the mail or the public pages: header fields stay one line,
and an issue body never leaks Markdown's placeholders or control characters into the email,
the web version or the feed."""

import re
import xml.etree.ElementTree as ET
from email import message_from_bytes
from email import policy as email_policy

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import translation
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from delivery import engine
from delivery.models import OutboxMessage, Rendition
from newsletters import rendering
from newsletters.models import Issue, Newsletter
from subscribers import dispatch
from subscribers.models import Subscription

pytestmark = pytest.mark.django_db

INJECTION = "Zine\r\nBcc: victim@x.example"
# C0 control characters an email part or an XML feed cannot carry (newline and tab are text).
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Markdown's own placeholders: text between STX and ETX that it failed to put back.
PLACEHOLDER = re.compile(r"klzzwxh|wzxhzdk")

# Raw HTML inside a link's address and inside code: escaped, never live.
BRIEF_BODY = 'see [site](https://ok.example/?q="><b>x</b>) and `<b>y</b>`'
# One asterisk too many: Markdown 3.11's own emphasis pairs `**` with `*` and cuts the next inline
# element (code, link, raw HTML) in two, leaving `klzzwxh:0000\x03` in its place.
UNBALANCED = "*Big **sale*`50%` off, *see **this*[our shop](https://shop.example/) and more"


# --- header fields ------------------------------------------------------------------------


def change_form_data(page):
    """The admin change form as a browser posts it back untouched (the empty inline rows left out)."""
    data = {}
    for bound in page.context["adminform"].form:
        if bound.value() is not None:
            data[bound.html_name] = bound.value()
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        rows = formset.initial_form_count()
        data[f"{formset.prefix}-TOTAL_FORMS"] = rows
        data[f"{formset.prefix}-INITIAL_FORMS"] = rows
        for row in formset.initial_forms:
            data.update({bound.html_name: bound.value() for bound in row if bound.value() is not None})
    return data


def test_the_admin_refuses_a_sender_name_with_a_line_break(client, make_creator):
    owner, newsletter = make_creator("zine")
    client.force_login(owner)
    url = reverse("admin:newsletters_newsletter_change", args=[newsletter.pk])

    data = change_form_data(client.get(url))
    assert client.post(url, {**data, "sender_name": "Zine Weekly"}).status_code == 302  # the form posts fine
    newsletter.refresh_from_db()
    assert newsletter.sender_name == "Zine Weekly"

    answer = client.post(url, {**data, "sender_name": INJECTION})
    assert answer.status_code == 200
    errors = answer.context["adminform"].form.errors
    assert "must be one line" in " ".join(errors["sender_name"])
    assert "must be one line, without line breaks" in answer.content.decode()
    newsletter.refresh_from_db()
    assert newsletter.sender_name == "Zine Weekly"


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", INJECTION),
        ("sender_name", INJECTION),
        ("welcome_subject", "Welcome!\nBcc: victim@x.example"),
        ("sender_email", "zine@sender.example\nBcc: victim@x.example"),
        ("reply_to", "zine@sender.example\r\nBcc: victim@x.example"),
    ],
)
def test_every_newsletter_header_field_must_be_one_line(make_creator, field, value):
    _, newsletter = make_creator("zine")
    setattr(newsletter, field, value)
    with pytest.raises(ValidationError) as refused:
        newsletter.full_clean()
    assert field in refused.value.message_dict


def test_an_issue_title_must_be_one_line(ready_issue):
    issue, _ = ready_issue()
    issue.title = "Issue one\r\nBcc: victim@x.example"
    with pytest.raises(ValidationError) as refused:
        issue.full_clean()
    assert "title" in refused.value.message_dict


def test_the_refusal_speaks_vietnamese_too(make_creator):
    _, newsletter = make_creator("zine")
    newsletter.sender_name = INJECTION
    with translation.override("vi"):
        with pytest.raises(ValidationError) as refused:
            newsletter.full_clean()
        assert "một dòng" in refused.value.message_dict["sender_name"][0]


def headers_of(raw):
    message = message_from_bytes(bytes(raw), policy=email_policy.default)
    head = bytes(raw).split(b"\r\n\r\n", 1)[0].decode()
    return message, head


@pytest.fixture
def sink_mailer(smtp_sink, settings, transport_settings):
    """The transactional mailer pointed at an SMTP sink, as EMAIL_URL=smtp://… would."""
    from ownedaudience.settings import _mailer

    transport_settings(smtp_sink.url + "?timeout=5")
    settings.MAILERS = {**settings.MAILERS, "transactional": _mailer(settings.EMAIL_TRANSPORT)}
    return smtp_sink


@pytest.mark.postgres
@pytest.mark.redis
def test_a_line_break_already_in_the_database_still_gets_the_confirmation_out(client, make_creator, sink_mailer,
                                                                              fresh_rate_limits):
    _, newsletter = make_creator("zine")
    Newsletter.objects.filter(pk=newsletter.pk).update(name=INJECTION, postal_address="1 Main Street, Hanoi")
    answer = client.post("/zine/subscribe", {"email": "ann@example.com"}, HTTP_ACCEPT="application/json")
    assert answer.status_code == 200

    assert dispatch.send_owed(dispatch.claim_due()) == 1
    [sent] = sink_mailer.messages
    assert sent.rcpt_tos == ["ann@example.com"]
    message, head = headers_of(sent.raw)
    assert message["Bcc"] is None and "victim" not in message.get("To", "")
    assert message["From"].addresses[0].display_name == "Zine Bcc: victim@x.example"
    assert message["Subject"] == "Confirm your subscription to Zine Bcc: victim@x.example"
    assert not re.search(r"^Bcc:", head, re.MULTILINE | re.IGNORECASE)
    assert Subscription.objects.get().owed_emails.get().status == "sent"


def test_a_line_break_already_in_the_database_does_not_break_an_issue(ready_issue, transport_settings):
    transport_settings("outbox://")
    issue, _ = ready_issue()
    Newsletter.objects.filter(pk=issue.newsletter_id).update(name=INJECTION, sender_name=INJECTION)
    engine.send_test(issue.pk, "me@creator.example")
    message, head = headers_of(OutboxMessage.objects.get(to="me@creator.example").raw)
    assert message["Bcc"] is None
    assert not re.search(r"^Bcc:", head, re.MULTILINE | re.IGNORECASE)
    assert message["From"].addresses[0].display_name == "Zine Bcc: victim@x.example"
    assert message["Subject"] == "[Test] Issue one"
    assert message["List-Id"].startswith("Zine Bcc: victim@x.example <zine.")


# --- issue bodies -------------------------------------------------------------------------


def rendered(body):
    """The issue's email (HTML and text parts) and its web version, for `body`."""
    newsletter = Newsletter(slug="zine", name="Zine", postal_address="1 Letter Lane, Hanoi")
    issue = Issue(newsletter=newsletter, title="Issue one", slug="issue-one", body_markdown=body)
    html, text = rendering.render_issue(issue, "free")
    return html, text, rendering.render_web_body(issue)


def test_a_hostile_link_and_code_come_out_escaped():
    html = rendering.markdown_to_html(BRIEF_BODY)
    assert not CONTROL.search(html) and not PLACEHOLDER.search(html)
    assert 'href="https://ok.example/?q=&quot;&gt;&lt;b&gt;x&lt;/b&gt;"' in html
    assert ">site</a>" in html
    assert "<code>&lt;b&gt;y&lt;/b&gt;</code>" in html
    assert "<b>" not in html


def test_unbalanced_asterisks_lose_nothing():
    html = rendering.markdown_to_html(UNBALANCED)
    assert not CONTROL.search(html) and not PLACEHOLDER.search(html)
    assert "<code>50%</code> off" in html
    assert '<a href="https://shop.example/" rel="noopener">our shop</a> and more' in html
    assert "<strong>" in html or "<em>" in html


@pytest.mark.parametrize(
    "body, kept",
    [
        ("Read *this, **now*<br> please", "please"),
        ("*Hi, **friend*<b>x</b> there", "there"),
        ("*(**new*[link](https://x.example))", ">link</a>"),
        ("For example <!-- [**Bold link**](http://example.com) --> ok", "ok"),
        ("a &#1; b &#x1b; c &#13; d", "c  d</p>"),
        ("forged \x02klzzwxh:0000\x03 and \x02wzxhzdk:0\x03 placeholders", "placeholders"),
        ("bell\x07 form feed\x0c nul\x00 and\r a lone return", "a lone return"),
        ("**bold** and *em* and ***both*** and snake_case_name", "snake_case_name"),
    ],
)
def test_hostile_bodies_render_without_control_characters(body, kept):
    email_html, email_text, web = rendered(body)
    for part in (email_html, email_text, web):
        assert not CONTROL.search(part), repr(part)
        if not PLACEHOLDER.search(body):
            assert not PLACEHOLDER.search(part), repr(part)
    assert kept in web and kept in email_html


def test_ordinary_emphasis_reads_as_before():
    html = rendering.markdown_to_html("**bold** *em* ***both*** __strong__ _under_ snake_case 2 * 3 * 4")
    assert "<strong>bold</strong> <em>em</em> <strong><em>both</em></strong>" in html
    assert "<strong>strong</strong> <em>under</em> snake_case 2 * 3 * 4" in html


def published(ready_issue, transport_settings, monkeypatch, body):
    monkeypatch.setattr(engine.chains, "kick", lambda *a, **k: None)
    transport_settings("discard://")
    issue, _ = ready_issue(n=2, body=body)
    engine.start_send(issue.pk)
    while engine.send_next_batch(issue.pk)[0] == "again":
        pass
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENT
    return issue


def feed_items(client, slug="zine"):
    """(title, description) of each item: the feed answers and parses as XML."""
    feed = client.get(f"/{slug}/feed.xml")
    assert feed.status_code == 200
    return [(item.findtext("title"), item.findtext("description")) for item in ET.fromstring(feed.content).iter("item")]


@pytest.mark.parametrize("body, shown", [(BRIEF_BODY, "<code>&lt;b&gt;y&lt;/b&gt;</code>"),
                                         (UNBALANCED, "<code>50%</code> off")])
def test_the_web_version_and_the_feed_of_a_sent_issue_answer(client, ready_issue, transport_settings,
                                                             monkeypatch, body, shown):
    published(ready_issue, transport_settings, monkeypatch, body)
    page = client.get("/zine/issues/issue-one/")
    assert page.status_code == 200
    assert not CONTROL.search(page.content.decode()) and shown in page.content.decode()
    [(_, description)] = feed_items(client)
    assert not PLACEHOLDER.search(description) and shown in description


def test_the_feed_survives_an_issue_sent_before_the_fix(client, ready_issue, transport_settings, monkeypatch):
    issue = published(ready_issue, transport_settings, monkeypatch, "Hello")
    Rendition.objects.filter(issue=issue, variant="web").update(
        html="<p>*Big <strong>sale</strong>klzzwxh:0000\x03 off \x02\x1b\ufffe</p>"
    )
    Newsletter.objects.filter(pk=issue.newsletter_id).update(description="Weekly\x0b notes")
    Issue.objects.filter(pk=issue.pk).update(title="Issue\x01 one")
    [(title, description)] = feed_items(client)
    assert title == "Issue one"
    assert "<strong>sale</strong>" in description and "off" in description


# --- any text -------------------------------------------------------------------------------

HYPOTHESIS = hypothesis_settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
MARKDOWNISH = st.sampled_from(
    ["*", "**", "***", "_", "__", "`", "<b>", "</b>", "<br>", "[l](https://l.example/)", "<!-- ", " -->",
     "&#1;", "&#x7f;", "&amp;", "\n", "\n\n", " ", "a", "b.", "=", "\"", ">", "[^1]", "\n[^1]: note\n",
     "    ", "- ", "1. ", "{{ name }}", "\r", "\x02", "\x03", "\x00", "\x1b"]
)
BODIES = st.one_of(st.text(), st.lists(st.one_of(MARKDOWNISH, st.text(max_size=3)), max_size=30).map("".join))
STORABLE = st.text(max_size=40).map(lambda value: value.replace("\x00", ""))  # PostgreSQL text holds no NUL


@hypothesis_settings(max_examples=400, deadline=None)
@given(body=BODIES)
def test_any_body_renders_without_control_characters_or_placeholders(body):
    for part in rendered(body):
        assert not CONTROL.search(part), repr(part)
        if not PLACEHOLDER.search(body):
            assert not PLACEHOLDER.search(part), repr(part)


@pytest.fixture
def public_issue(make_creator):
    _, newsletter = make_creator("zine")
    return Issue.objects.create(newsletter=newsletter, title="Issue one", slug="issue-one", status="sent")


@HYPOTHESIS
@given(body=BODIES, title=STORABLE)
def test_the_feed_parses_whatever_the_issue_holds(client, public_issue, body, title):
    Issue.objects.filter(pk=public_issue.pk).update(body_markdown=body.replace("\x00", ""), title=title)
    feed_items(client)
    assert client.get("/zine/issues/issue-one/").status_code == 200
