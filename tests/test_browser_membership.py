"""End to end in real Chromium: a fan picks a plan on the bio page and is sent to Stripe Checkout;
after Stripe's completed-checkout webhook they log in with a code from their inbox and read the
paid part of an issue that a logged-out visitor sees cut at the paywall.

Gunicorn serves the app; Stripe is the loopback stand-in (its Checkout page included); the code
email goes through the transactional queue to a real worker and an SMTP sink.
"""

import http.client
import re
import uuid
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.utils import timezone

from billing import services
from newsletters.models import Issue
from subscribers.models import Subscription

from .browser import PHONE, chromium
from .servers import web_server
from .stripe_standin import StripeStandIn, signed
from .test_browser_signup import mail_to, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]

KEY, SECRET = "sk_test_browser", "whsec_browser"
FREE_PART, PAID_PART = "Everyone can read this opening.", "Only members read this secret ending."


def post_webhook(base, body, header):
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    connection.request("POST", "/billing/stripe/webhook/", body=body.encode(),
                       headers={"Content-Type": "application/json", "Stripe-Signature": header})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def test_a_fan_pays_through_checkout_logs_in_by_code_and_reads_past_the_paywall(
    make_creator, database_url, smtp_sink, start_worker, monkeypatch,
):
    standin = StripeStandIn().start()
    fan = f"fan-{uuid.uuid4().hex[:8]}@example.com"  # the login limits count per address in the shared cache
    _, news = make_creator("zine")
    news.sender_email, news.postal_address = "zine@sender.example", "1 Letter Lane"
    news.save()
    stripe_env = {"STRIPE_SECRET_KEY": KEY, "STRIPE_WEBHOOK_SECRET": SECRET, "STRIPE_API_BASE": standin.url}
    with monkeypatch.context() as patch:
        for name, value in stripe_env.items():
            patch.setattr(settings, name, value)
        plan = services.plan_create(newsletter=news, name="Monthly", interval="month", amount=500, currency="usd")
    Issue.objects.create(
        newsletter=news, title="The long one", slug="the-long-one", status=Issue.Status.SENT, sent_at=timezone.now(),
        body_markdown=f"{FREE_PART}\n\n<!-- paywall -->\n\n{PAID_PART}",
    )
    env = {"DATABASE_URL": database_url, "REDIS_URL": settings.REDIS_URL, "EMAIL_URL": smtp_sink.url,
           "RATE_LIMIT_KEY_PREFIX": f"test-rl:{uuid.uuid4().hex}", **stripe_env}
    try:
        with (
            web_server(**env) as base,
            start_worker(queues="transactional", SITE_URL=base, EMAIL_URL=smtp_sink.url,
                         RATE_LIMIT_KEY_PREFIX=env["RATE_LIMIT_KEY_PREFIX"]),
        ):
            monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
            with chromium() as browser:
                # 1. The bio page offers the plan; joining lands on Stripe's Checkout page.
                phone = browser.new_context(**PHONE)
                page = phone.new_page()
                page.goto(f"{base}/zine/")
                plans = page.locator("#plans")
                assert "$5.00" in plans.inner_text()
                plans.locator("input[name=email]").fill(fan)
                plans.locator("button[type=submit]").click()
                page.wait_for_url(f"{standin.url}/checkout/*")
                assert page.locator("h1").inner_text().startswith("Checkout cs_test_")
                session_id = page.url.rsplit("/", 1)[1]
                call = standin.calls("POST", "/v1/checkout/sessions")[-1]
                subscription = Subscription.objects.get(subscriber__email=fan, newsletter=news)
                assert call["params"]["client_reference_id"] == str(subscription.pk)
                assert call["params"]["line_items"][0]["price"] == plan.stripe_price_id

                # 2. The fan pays; Stripe's signed webhook makes them a paid subscriber.
                completed, _ = standin.complete_checkout(session_id)
                assert post_webhook(base, *signed("checkout.session.completed", completed, SECRET)) == 200
                subscription.refresh_from_db()
                assert (subscription.status, subscription.tier) == ("active", "paid")

                # 3. Logged out, the issue stops at the paywall.
                visitor = browser.new_context().new_page()
                visitor.goto(f"{base}/zine/issues/the-long-one/")
                text = visitor.locator("article").inner_text()
                assert FREE_PART in text and PAID_PART not in text and PAID_PART not in visitor.content()
                assert "for paying members" in text

                # 4. The member logs in with the code from their inbox and reads all of it.
                page.goto(f"{base}/zine/issues/the-long-one/")
                page.click("text=Already a member? Log in")
                page.fill("input[name=email]", fan)
                page.click("button[type=submit]")
                email = mail_to(smtp_sink, fan, "code")
                code = re.search(r"^ +([A-Z]{4}-[A-Z]{4})\r?$", email.get_body(("plain",)).get_content(), re.MULTILINE).group(1)
                page.wait_for_selector("input[name=code]")
                page.fill("input[name=code]", code)
                page.click("button[type=submit]")
                wait_for(lambda: "/zine/issues/the-long-one/" in page.url, what="back on the issue")
                text = page.locator("article").inner_text()
                assert FREE_PART in text and PAID_PART in text and "for paying members" not in text
    finally:
        standin.stop()
