"""A member's pages under /account/: the list of their memberships, and allauth's code login around it.

They span newsletters, so they follow the browser's language (LocaleMiddleware), as the preference
page does. The login pages name the newsletter a member came from when `?next=` is one of its pages.
"""

from urllib.parse import urlsplit

from allauth.account.views import ConfirmLoginCodeView, RequestLoginCodeView
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csp import csp_override
from django.views.decorators.http import require_POST

from billing.accounts import BillingNotSetUp
from billing.selectors import member_subscriptions
from billing.services import BillingError, portal_url
from newsletters.models import Newsletter

from .members import code_minutes


def newsletter_of(url):
    """The newsletter whose pages `url` (a ?next= allauth has checked) is under, if any."""
    slug = urlsplit(url or "").path.strip("/").split("/")[0]
    return Newsletter.objects.filter(slug=slug).first() if slug else None


class MemberLoginContext:
    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        return {**context, "newsletter": newsletter_of(self.get_next_url()), "minutes": code_minutes()}


class RequestCode(MemberLoginContext, RequestLoginCodeView):
    pass


class ConfirmCode(MemberLoginContext, ConfirmLoginCodeView):
    pass


request_code = RequestCode.as_view()
confirm_code = ConfirmCode.as_view()


@never_cache
@login_required
@csp_override(settings.CSP_TO_STRIPE)
def member_account(request):
    return render(request, "pages/account.html", {"memberships": member_subscriptions(request.user.email)})


@never_cache
@login_required
@require_POST
def manage_billing(request, subscription_id):
    """To Stripe's Customer Portal for one of the member's own memberships (404 for anyone else's)."""
    subscription = get_object_or_404(member_subscriptions(request.user.email), pk=subscription_id)
    membership = getattr(subscription, "membership", None)
    if membership is None or not membership.stripe_customer_id:
        raise Http404
    try:
        url = portal_url(membership, request.build_absolute_uri(reverse("member_account")))
    except (BillingError, BillingNotSetUp):
        messages.error(request, _("Stripe could not be reached. Please try again in a minute."))
        return redirect("member_account")
    return HttpResponseRedirect(url, status=303)
