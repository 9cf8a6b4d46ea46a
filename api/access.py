"""Who a request is and what it may reach: a token's user's own newsletters (a superuser's: all).

Anything outside them answers 404, as if it did not exist, the same as the admin does.
"""

from django.shortcuts import get_object_or_404
from ninja.security import HttpBearer

from newsletters.models import Issue, Newsletter
from subscribers.models import Subscription

from .tokens import token_authenticate


class TokenAuth(HttpBearer):
    """`Authorization: Bearer oa_<prefix>_<secret>`; request.auth is the ApiToken."""

    def authenticate(self, request, token):
        return token_authenticate(token)


def user_of(request):
    return request.auth.user


def newsletters_of(request):
    user = user_of(request)
    newsletters = Newsletter.objects.all()
    if user.is_superuser:
        return newsletters
    return newsletters.filter(pk__in=Newsletter.objects.filter(owners=user).values("pk"))


def newsletter_or_404(request, slug):
    return get_object_or_404(newsletters_of(request), slug=slug)


def subscription_or_404(request, slug, subscription_id):
    newsletter = newsletter_or_404(request, slug)
    subscription = get_object_or_404(
        Subscription.objects.select_related("subscriber"), pk=subscription_id, newsletter=newsletter
    )
    return newsletter, subscription


def issue_or_404(request, issue_id, *, for_update=False):
    issues = Issue.objects.select_related("newsletter")
    if for_update:
        issues = issues.select_for_update(of=("self",))
    return get_object_or_404(issues, pk=issue_id, newsletter__in=newsletters_of(request))
