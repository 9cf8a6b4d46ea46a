"""Engagement without spying: counted links, the open pixel, per-fan records only when the creator says so."""

import email
import email.policy
import re

import pytest
from django.conf import settings
from django.core import signing
from django.utils import translation

from delivery import engagement, engine
from delivery.models import Delivery, DeliveryOpen, IssueEngagement, LinkClick, OutboxMessage, TrackedLink
from newsletters.slugs import RESERVED_SLUGS

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

ORIGINAL = "https://example.org/x"
NOTICE = "This newsletter records who opens its emails and who clicks its links."
NOTICE_VI = "Bản tin này ghi lại ai mở email của nó và ai nhấp vào các liên kết trong đó."


@pytest.fixture
def send(ready_issue, transport_settings, monkeypatch):
    """Send an issue through the dev outbox, in this process; returns (issue, {address: parsed email})."""
    monkeypatch.setattr(engine.chains, "kick", lambda *args, **kwargs: None)
    transport_settings("outbox://")

    def run(n=2, body=None, **flags):
        issue, _ = ready_issue(n=n, **({"body": body} if body else {}))
        newsletter = issue.newsletter
        for name, value in flags.items():
            setattr(newsletter, name, value)
        newsletter.save()
        engine.start_send(issue.pk)
        for _ in range(20):
            if engine.send_next_batch(issue.pk, "w1")[0] != "again":
                break
        messages = {
            message.to: email.message_from_bytes(bytes(message.raw), policy=email.policy.default)
            for message in OutboxMessage.objects.filter(newsletter=newsletter)
        }
        assert len(messages) == n
        return issue, messages

    return run


def parts(message):
    return (message.get_body(preferencelist=("html",)).get_content(),
            message.get_body(preferencelist=("plain",)).get_content())


def path_of(url):
    assert url.startswith(settings.SITE_URL)
    return url[len(settings.SITE_URL):]


def click_links(html):
    return [path_of(url.replace("&amp;", "&")) for url in re.findall(r'href="([^"]*/l/[^"]+)"', html)]


def body_link(html):
    """The tracked address of the body's [Read more](https://example.org/x)."""
    [url] = re.findall(r'<a href="([^"]+)"[^>]*>Read more</a>', html)
    return path_of(url)


def test_a_tracked_link_redirects_to_the_original_and_counts_once(send, client):
    issue, messages = send(track_clicks=True)
    html, text = parts(messages["fan0@fans.example"])
    assert ORIGINAL not in html and ORIGINAL not in text
    link = body_link(html)
    assert link.startswith("/l/")
    assert settings.SITE_URL + link in text  # the text part's copy of the same link
    # Unsubscribe and preferences stay the fan's own links.
    assert f"{settings.SITE_URL}/unsubscribe/" in html and f"{settings.SITE_URL}/preferences/" in text

    response = client.get(link)
    assert response.status_code == 302 and response["Location"] == ORIGINAL
    assert response["Cache-Control"] == "no-store"
    tracked = TrackedLink.objects.get(issue=issue, url=ORIGINAL)
    assert tracked.clicks == 1
    # Every recipient's copy and both parts share one row per address.
    assert body_link(parts(messages["fan1@fans.example"])[0]) == link
    assert TrackedLink.objects.filter(issue=issue, url=ORIGINAL).count() == 1
    figures = engagement.issue_engagement(issue.pk)
    assert figures["clicks"] == 1 and figures["links"][0] == (ORIGINAL, 1)
    assert figures["unique_clickers"] is None and figures["opens_reliable"] is False
    assert not LinkClick.objects.exists()  # aggregate only


def test_a_tampered_or_unknown_token_is_a_404_and_the_request_never_chooses_the_target(send, client):
    issue, messages = send(track_clicks=True)
    link = body_link(parts(messages["fan0@fans.example"])[0])
    token = link.removeprefix("/l/")
    value, signature = token.split(":")
    other = engagement.link_token(TrackedLink.objects.order_by("-id").first().pk + 1000)  # signed, but no such link
    forged = f"{signing.b62_encode(signing.b62_decode(value) + 1)}:{signature}"
    for bad in [f"/l/{forged}", f"/l/{value}:{signature[:-2]}xx", f"/l/{other}", "/l/nothing",
                f"/l/{signing.Signer(salt='ownedaudience.unsubscribe').sign(value)}"]:
        assert client.get(bad).status_code == 404, bad
    for tricky in [f"{link}?next=https://evil.example/", f"{link}?url=https://evil.example/"]:
        response = client.get(tricky)
        assert response.status_code == 302 and response["Location"] == ORIGINAL
    response = client.get(f"{link}/https:evil.example")
    assert response.status_code == 302 and response["Location"] == ORIGINAL  # a bad recipient token only
    assert client.get(f"{link}/https:%2F%2Fevil.example").status_code == 404
    assert client.get("/l/https://evil.example/").status_code == 404
    assert TrackedLink.objects.get(issue=issue, url=ORIGINAL).clicks == 3


def test_head_requests_count_nothing(send, client):
    issue, messages = send(track_clicks=True)
    link = body_link(parts(messages["fan0@fans.example"])[0])
    response = client.head(link)
    assert response.status_code == 302 and response["Location"] == ORIGINAL
    assert client.post(link).status_code == 405
    assert TrackedLink.objects.get(issue=issue, url=ORIGINAL).clicks == 0


def test_without_click_tracking_the_links_are_untouched(send):
    _, messages = send()
    html, text = parts(messages["fan0@fans.example"])
    assert f'href="{ORIGINAL}"' in html and f"({ORIGINAL})" in text
    assert "/l/" not in html and "/o/" not in html and NOTICE not in html
    assert not TrackedLink.objects.exists() and not IssueEngagement.objects.exists()


def test_mailto_and_placeholders_are_left_alone(send):
    body = "Write [to me](mailto:me@zine.example) or read https://example.org/a, and [this](https://example.org/b)."
    issue, messages = send(body=body, track_clicks=True)
    html, text = parts(messages["fan0@fans.example"])
    assert 'href="mailto:me@zine.example"' in html and "mailto:me@zine.example" in text
    assert "https://example.org/a" not in text and "https://example.org/b" not in html
    assert set(TrackedLink.objects.filter(issue=issue).values_list("url", flat=True)) >= {
        "https://example.org/a", "https://example.org/b"
    }
    assert not TrackedLink.objects.filter(url__contains="mailto").exists()
    assert not TrackedLink.objects.filter(url__contains="unsubscribe").exists()
    # "read https://example.org/a," keeps its comma outside the link.
    assert re.search(r"/l/[^\s,]+, and", text)


def test_per_subscriber_the_footer_says_so_and_the_click_is_kept_against_the_delivery(send, client):
    issue, messages = send(track_clicks=True, track_opens=True, engagement_per_subscriber=True)
    html, text = parts(messages["fan1@fans.example"])
    assert NOTICE in html and NOTICE in text
    link = body_link(html)
    other = body_link(parts(messages["fan0@fans.example"])[0])
    assert link != other  # each copy carries its recipient
    assert client.head(link).status_code == 302
    assert client.get(link)["Location"] == ORIGINAL
    delivery = Delivery.objects.get(issue=issue, subscriber__email="fan1@fans.example")
    [recorded] = LinkClick.objects.all()
    assert recorded.delivery_id == delivery.pk and recorded.link.url == ORIGINAL
    # The token is this issue's and this delivery's: tampering with it records nothing more.
    tampered = link[:-3] + ("aaa" if not link.endswith("aaa") else "bbb")
    assert client.get(tampered)["Location"] == ORIGINAL
    assert LinkClick.objects.count() == 1
    figures = engagement.issue_engagement(issue.pk)
    assert figures["clicks"] == 2 and figures["unique_clickers"] == 1

    # The creator sees the figures on the issue's page, opens marked as rough.
    owner = issue.newsletter.owners.get()
    client.force_login(owner)
    page = client.get(f"/admin/newsletters/issue/{issue.pk}/change/").content.decode()
    assert "clicks: <strong>2</strong> by 1 reader" in page and "a rough figure" in page
    assert ORIGINAL in page and "as every email's footer says" in page

    # Erasing the fan erases what was kept about their clicks.
    from subscribers.erasure import erase_subscriber

    erase_subscriber(delivery.subscriber_id, actor="test")
    assert not LinkClick.objects.exists()


def test_the_footer_speaks_the_newsletters_language(send):
    _, messages = send(n=1, engagement_per_subscriber=True, language="vi")
    html, text = parts(messages["fan0@fans.example"])
    assert NOTICE_VI in html and NOTICE_VI in text and NOTICE not in text
    with translation.override("vi"):
        assert translation.gettext(NOTICE) == NOTICE_VI


def test_per_fan_records_stop_when_the_creator_turns_them_off(send, client):
    issue, messages = send(track_clicks=True, engagement_per_subscriber=True)
    link = body_link(parts(messages["fan0@fans.example"])[0])
    issue.newsletter.engagement_per_subscriber = False
    issue.newsletter.save()
    assert client.get(link)["Location"] == ORIGINAL
    assert not LinkClick.objects.exists()
    assert TrackedLink.objects.get(issue=issue, url=ORIGINAL).clicks == 1


def pixel_of(html):
    [url] = re.findall(r'<img src="([^"]*/o/[^"]+\.gif)"', html)
    return path_of(url)


def test_the_open_pixel_counts_one_open(send, client):
    issue, messages = send(track_opens=True)
    html, _ = parts(messages["fan0@fans.example"])
    assert html.rstrip().endswith("</html>") and html.index(pixel_of(html)) > html.index('class="foot"')
    response = client.get(pixel_of(html))
    assert response.status_code == 200 and response["Content-Type"] == "image/gif"
    assert response["Cache-Control"] == "no-store" and response.content.startswith(b"GIF89a")
    assert IssueEngagement.objects.get(issue=issue).opens == 1
    assert client.head(pixel_of(html)).status_code == 200
    assert IssueEngagement.objects.get(issue=issue).opens == 1
    figures = engagement.issue_engagement(issue.pk)
    assert figures["opens"] == 1 and figures["opens_reliable"] is False and figures["clicks"] == 0
    assert not DeliveryOpen.objects.exists()
    assert "/l/" not in html  # opens only: links untouched


def test_a_bad_pixel_token_is_still_the_image_and_counts_nothing(send, client):
    issue, messages = send(track_opens=True)
    pixel = pixel_of(parts(messages["fan0@fans.example"])[0])
    for bad in [pixel.replace(".gif", "x.gif"), "/o/nothing.gif", "/o/1:abc/2:def.gif"]:
        response = client.get(bad)
        assert response.status_code == 200 and response["Content-Type"] == "image/gif", bad
    assert IssueEngagement.objects.get(issue=issue).opens == 0


def test_per_subscriber_an_open_is_kept_against_the_delivery(send, client):
    issue, messages = send(track_opens=True, engagement_per_subscriber=True)
    pixel = pixel_of(parts(messages["fan1@fans.example"])[0])
    client.get(pixel)
    client.get(pixel)
    delivery = Delivery.objects.get(issue=issue, subscriber__email="fan1@fans.example")
    assert IssueEngagement.objects.get(issue=issue).opens == 2
    assert list(DeliveryOpen.objects.values_list("delivery_id", flat=True)) == [delivery.pk]
    assert engagement.issue_engagement(issue.pk)["unique_openers"] == 1


def test_a_recipient_token_of_another_issue_or_a_made_up_delivery_records_nothing():
    token = engagement.recipient_token(7, 42)
    assert engagement.read_recipient(token, 7) == 42
    assert engagement.read_recipient(token, 8) is None
    assert engagement.read_recipient(token.replace(":", "x:"), 7) is None
    assert engagement._recorded_delivery(token, 7) is None  # no such ledger row


def test_the_short_paths_are_reserved():
    assert {"l", "o"} <= RESERVED_SLUGS
