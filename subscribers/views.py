"""The fan's side of the email links: confirm, unsubscribe (RFC 8058 one-click), preferences.

These pages are reached from emails, posted to by mail providers, and fetched by link
scanners. A signed token in the URL is the only credential, so they are CSRF-exempt and set
no cookies; a GET only ever shows a page with a button, and only a POST changes anything.
"""

from django.conf import settings
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from . import services
from .erasure import erase_subscriber
from .models import Subscription
from ownedaudience.throttle import client_ip
from .tokens import make_token, read_token


def _subscription(purpose, token):
    subscription_id = read_token(purpose, token)
    if subscription_id is None:
        return None, None
    subscription = (
        Subscription.objects.select_related("newsletter", "subscriber").filter(id=subscription_id).first()
    )
    return subscription_id, subscription


def _page(request, template, context, status=200, newsletter=None):
    """Render in the newsletter's language when there is one; else the browser's (LocaleMiddleware)."""
    if newsletter is None:
        response = render(request, template, context, status=status)
    else:
        with translation.override(newsletter.language):
            response = render(request, template, {"newsletter": newsletter, **context}, status=status)
            response.headers["Content-Language"] = newsletter.language
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token must not leak to linked sites
    return response


def _with_preferences_link(subscription):
    return {
        "subscription": subscription,
        "preferences_url": reverse("subscribers:preferences", args=[make_token("preferences", subscription.id)]),
    }


def _bad_link(request, status=404):
    return _page(request, "subscribers/bad_link.html", {}, status=status)


@csrf_exempt
@never_cache
def confirm(request, token):
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    subscription_id, subscription = _subscription("confirm", token)
    if subscription is None:
        return _bad_link(request)
    newsletter = subscription.newsletter
    if request.method == "POST":
        subscription, _confirmed_now = services.subscription_confirm(subscription_id=subscription_id)
        if subscription is None:
            return _bad_link(request)
    context = _with_preferences_link(subscription)
    return _page(request, "subscribers/confirm.html", context, newsletter=newsletter)


@csrf_exempt
@never_cache
def unsubscribe(request, token):
    """GET: a page with a button. POST (the button, or a mail provider's one-click): out, 200, every time."""
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    subscription_id, subscription = _subscription("unsubscribe", token)
    if subscription_id is None:
        return _bad_link(request, status=400 if request.method == "POST" else 404)
    if request.method == "POST":
        one_click = request.POST.get("List-Unsubscribe") == "One-Click"
        subscription = services.subscription_unsubscribe(
            subscription_id=subscription_id, detail="one-click (RFC 8058)" if one_click else "unsubscribe page"
        )
    if subscription is None:
        # Deleted by the creator: as far as the fan is concerned, they are off the list.
        return _page(request, "subscribers/unsubscribed.html", {"subscription": None})
    context = _with_preferences_link(subscription)
    template = "subscribers/unsubscribed.html" if request.method == "POST" else "subscribers/unsubscribe.html"
    return _page(request, template, context, newsletter=subscription.newsletter)


PREFERENCE_ACTIONS = ("leave", "rejoin", "export")


@csrf_exempt
@never_cache
def preferences(request, token):
    """Every newsletter of this installation the address follows or followed: leave, rejoin, take your data."""
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    _subscription_id, subscription = _subscription("preferences", token)
    if subscription is None:
        return _bad_link(request)
    subscriber = subscription.subscriber
    subscriptions = list(subscriber.subscriptions.select_related("newsletter").order_by("newsletter__name"))

    if request.method == "POST":
        action = request.POST.get("action", "")
        target = next((s for s in subscriptions if str(s.id) == request.POST.get("subscription", "")), None)
        if action not in PREFERENCE_ACTIONS or (target is None and action != "export"):
            return _page(
                request,
                "subscribers/preferences.html",
                _preferences_context(token, subscriber, subscriptions, _("That did not work; please try again.")),
                status=400,
            )
        if action == "leave":
            services.subscription_unsubscribe(subscription_id=target.id, detail="preferences page")
        elif action == "rejoin":
            with translation.override(target.newsletter.language):
                consent = _("Rejoined %(name)s from the preference page.") % {"name": target.newsletter.name}
            services.subscription_rejoin(
                subscription=target,
                consent_text=consent,
                ip=client_ip(request),
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
            )
        else:
            services.data_export_request(subscription=target or subscription)
        # Post/redirect/get, carrying the outcome in the URL (no cookie, no session).
        return HttpResponseRedirect(f"{request.path}?done={action}", status=303)

    notices = {
        "leave": _("Done: you left that newsletter."),
        "rejoin": _("Welcome back: you are on that list again."),
        "export": _("Your data is on its way to your inbox (at most one email an hour)."),
    }
    notice = notices.get(request.GET.get("done", ""), "")
    return _page(
        request, "subscribers/preferences.html", _preferences_context(token, subscriber, subscriptions, notice)
    )


def _preferences_context(token, subscriber, subscriptions, notice):
    return {"subscriber": subscriber, "subscriptions": subscriptions, "notice": notice,
            "erase_url": reverse("subscribers:erase", args=[token])}


@csrf_exempt
@never_cache
def erase(request, token):
    """The fan's "delete my data", linked from the preference page: GET asks (link scanners fetch it),
    POST forgets the address everywhere. In the language of the newsletter whose email carried the link."""
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    _subscription_id, subscription = _subscription("preferences", token)
    if subscription is None:
        return _bad_link(request)
    newsletter = subscription.newsletter
    if request.method == "POST":
        erase_subscriber(subscription.subscriber_id, actor="fan")
        return _page(request, "subscribers/erased.html", {}, newsletter=newsletter)
    context = {
        "subscriber": subscription.subscriber, "keeps_digest": settings.ERASURE_KEEP_DIGEST,
        "subscriptions": subscription.subscriber.subscriptions.select_related("newsletter").order_by("newsletter__name"),
        "preferences_url": reverse("subscribers:preferences", args=[token]),
    }
    return _page(request, "subscribers/erase.html", context, newsletter=newsletter)
