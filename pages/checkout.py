"""Becoming a paying member from the bio page or the paywall: a plan, an address, then Stripe Checkout.

Like the signup form, the join form is posted cookie-free (CSRF-exempt): all it can do is make a
pending subscription (never mailed) and send the browser to Stripe, counted against the signup
limits per network and per address. The success page trusts nothing in its address: access
comes from the verified webhook alone.
"""

import logging

from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing import selectors as billing_selectors
from billing.accounts import BillingNotSetUp
from billing.services import AlreadyMember, BillingError, checkout_start
from newsletters.models import Newsletter
from ownedaudience import links
from ownedaudience.throttle import client_ip, signup_allowed
from subscribers.forms import SignupForm, clean_source

log = logging.getLogger(__name__)


def _page(request, newsletter, template, *, status=200, **context):
    with translation.override(newsletter.language):
        response = render(request, template, {"newsletter": newsletter, "page_url": f"/{newsletter.slug}/",
                                              **context}, status=status)
    response.headers["Content-Language"] = newsletter.language
    return response


def _problem(request, newsletter, message, status):
    return _page(request, newsletter, "pages/join_problem.html", status=status, message=message)


@csrf_exempt
@require_POST
def join(request, slug):
    """/<slug>/join: plan and email posted; 303 to the Checkout Session's URL."""
    newsletter = get_object_or_404(Newsletter, slug=slug)
    with translation.override(newsletter.language):
        plans = billing_selectors.plans_on_offer(newsletter.pk)
        if not billing_selectors.billing_ready(newsletter.pk):
            return _problem(request, newsletter, _("Paid memberships are not set up for this newsletter yet."), 503)
        plan = plans.filter(pk=request.POST.get("plan") if str(request.POST.get("plan", "")).isdigit() else None).first()
        if plan is None:
            return _problem(request, newsletter, _("Pick one of the plans on the page."), 400)
        form = SignupForm(request.POST, newsletter=newsletter)
        if not form.is_valid():
            return _problem(request, newsletter, " ".join(" ".join(m) for m in form.errors_by_field().values()), 400)
        email = form.cleaned_data["email"]
        ip_ok, address_ok, retry_after = signup_allowed(ip=client_ip(request), address=email)
        if not (ip_ok and address_ok):
            response = _problem(request, newsletter, _("Too many attempts just now. Please try again in a few minutes."),
                                429)
            response.headers["Retry-After"] = str(retry_after)
            return response
        try:
            url = checkout_start(
                plan=plan, email=email, source=clean_source(request.POST.get("ref", "")) or "checkout",
                success_url=links.absolute(f"/{newsletter.slug}/joined"),
                cancel_url=links.absolute(f"/{newsletter.slug}/?checkout=canceled#plans"),
            )
        except BillingNotSetUp:
            return _problem(request, newsletter, _("Paid memberships are not set up for this newsletter yet."), 503)
        except AlreadyMember:
            return _problem(request, newsletter, _(
                "You are a member already: log in to read the paid issues, and change or cancel your plan from "
                "your account page."), 409)
        except BillingError as error:
            log.warning("checkout for %s refused: %s", newsletter.slug, error)
            if error.unreachable:
                return _problem(request, newsletter, _("Stripe could not be reached. Please try again in a minute."),
                                502)
            return _problem(request, newsletter, _("Stripe refused to start the payment. Please try again later."), 400)
    return HttpResponseRedirect(url, status=303)


def joined(request, slug):
    """Back from Checkout: thanks, and how to read paid issues (access comes with the webhook)."""
    newsletter = get_object_or_404(Newsletter, slug=slug)
    login = reverse("account_request_login_code")
    return _page(request, newsletter, "pages/joined.html", login_url=f"{login}?next=/{newsletter.slug}/issues/")
