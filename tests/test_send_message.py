"""What a fan's mail client sees: headers for one-click unsubscribe, both parts, the footer."""

import email
import email.policy

import pytest
from django.utils import timezone

from delivery import engine
from delivery.mime import PreparedMessage, Recipient, shared_headers
from newsletters.rendering import render_issue
from subscribers.tokens import make_token, read_token

pytestmark = pytest.mark.django_db


def build(issue, name="Ann", subscription_id=7, email_address="ann@fans.example"):
    html, text = render_issue(issue, "free")
    prepared = PreparedMessage(issue=issue, headers=shared_headers(issue), html_body=html, text_body=text)
    outgoing = prepared.build(Recipient(42, email_address, name, subscription_id))
    return outgoing, email.message_from_bytes(outgoing.raw, policy=email.policy.default)


def test_bulk_headers_follow_rfc_8058(ready_issue, settings):
    settings.SITE_URL = "https://news.example.org"
    issue, _ = ready_issue()
    outgoing, message = build(issue)
    unsubscribe = message["List-Unsubscribe"]
    https, mailto = [part.strip(" <>") for part in unsubscribe.split(",")]
    assert https.startswith("https://news.example.org/unsubscribe/")
    assert read_token("unsubscribe", https.rsplit("/", 1)[1]) == 7
    assert mailto.startswith("mailto:zine@sender.example?subject=unsubscribe%20")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Message-ID"] == "<oa.%d.42@sender.example>" % issue.pk == outgoing.message_id
    assert email.utils.parsedate_to_datetime(message["Date"]) <= timezone.now()
    assert message["To"] == "Ann <ann@fans.example>"
    assert message["Subject"] == "Issue one"
    assert message["X-Newsletter"] == "zine"
    assert "zine." in message["List-Id"]


def test_both_parts_carry_the_body_footer_and_links(ready_issue):
    issue, _ = ready_issue()
    _, message = build(issue)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for part in (text, html):
        assert "Hello Ann," in part
        assert "1 Letter Lane, Hanoi" in part
        assert "/unsubscribe/" + make_token("unsubscribe", 7) in part
        assert "/preferences/" + make_token("preferences", 7) in part
        assert f"/zine/issues/{issue.slug}/" in part
    assert "<strong>things</strong>" in html
    assert 'style="' in html  # CSS was inlined


def test_names_cannot_inject_headers_or_markup(ready_issue):
    issue, _ = ready_issue()
    _, message = build(issue, name="Eve\r\nBcc: victim@example.com <b>bold</b>")
    assert message["Bcc"] is None
    html = message.get_body(("html",)).get_content()
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html


def test_vietnamese_newsletters_speak_vietnamese(ready_issue):
    issue, _ = ready_issue()
    issue.newsletter.language = "vi"
    issue.newsletter.save()
    issue.title = "Bản tin số một"
    _, message = build(issue, name="Nguyễn Văn A")
    assert message["Subject"] == "Bản tin số một"
    assert "Nguyễn Văn A" in message["To"]
    text = message.get_body(("plain",)).get_content()
    assert "Hủy đăng ký" in text


def test_lines_stay_within_smtp_limits(ready_issue):
    issue, _ = ready_issue(body="Hello {{ name }},\n\n" + "word " * 5000)
    outgoing, message = build(issue, name="Nguyễn " * 30)
    assert max(len(line) for line in outgoing.raw.split(b"\r\n")) <= 998
    assert b"\n" not in outgoing.raw.replace(b"\r\n", b"")
    body = outgoing.raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76  # quoted-printable's own limit
    assert ("Hello " + "Nguyễn " * 29 + "Nguyễn,") in message.get_body(("plain",)).get_content()


def test_a_test_copy_goes_out_at_once(ready_issue, transport_settings, smtp_sink):
    transport_settings(smtp_sink.url)
    issue, _ = ready_issue()
    engine.send_test(issue.pk, "creator@example.com")
    [received] = smtp_sink.to("creator@example.com")
    assert received.message["Subject"] == "[Test] Issue one"
    issue.refresh_from_db()
    assert issue.status == "draft"


def test_no_line_starts_with_a_dot(ready_issue):
    issue, _ = ready_issue(body="Hello {{ name }},\n\n.hidden line\n\n" + ("word " * 15 + ".\n") * 40)
    outgoing, message = build(issue, name=".dotty")
    assert not outgoing.raw.startswith(b".") and b"\n." not in outgoing.raw
    text = message.get_body(("plain",)).get_content()
    assert ".hidden line" in text and "Hello .dotty," in text
