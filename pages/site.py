"""The public face of a newsletter: its link-in-bio page, short source links, embed forms, signup.

Everything here works with JavaScript off and sets no cookie. The signup endpoint takes posts
from any origin (the copy-paste embed form), so it is CSRF-exempt and defends itself: a
honeypot, rate limits, blocked domains, strict validation, and the same answer whether or not
the address was already on the list.
"""

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.db.models import F
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse, UnreadablePostError
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.csp import csp_override
from django.views.decorators.csrf import csrf_exempt

from billing import selectors as billing_selectors
from newsletters.embed import consent_text_for
from newsletters.models import Issue, Newsletter
from ownedaudience import links
from ownedaudience.throttle import client_ip, signup_allowed
from subscribers import services as subscriber_services
from subscribers.forms import FORMS, SignupForm, clean_source
from subscribers.models import SourceLink

log = logging.getLogger(__name__)

MAX_SIGNUP_BODY = 16 * 1024  # a signup is a few hundred bytes; anything far bigger is not one
LATEST_ISSUES = 5
HONEYPOT = "website"  # hidden from people; bots fill it in


def _source_from(data):
    return clean_source(data.get("ref") or data.get("utm_source") or "")


def _in_language(newsletter, build):
    with translation.override(newsletter.language):
        response = build()
    response.headers["Content-Language"] = newsletter.language
    return response


def _page_context(request, newsletter, *, source="", form_email="", errors=None, checkout_canceled=False):
    issues = list(
        Issue.objects.filter(newsletter=newsletter, status=Issue.Status.SENT, show_on_web=True).order_by(
            F("sent_at").desc(nulls_last=True), "-id"
        )[:LATEST_ISSUES]
    )
    for issue in issues:
        issue.url = links.issue(issue, absolute_url=False)
    return {
        "newsletter": newsletter,
        "social_links": list(newsletter.social_links.all()),
        "issues": issues,
        "source": source,
        "consent_text": consent_text_for(newsletter),
        "page_url": links.page(newsletter),
        "subscribe_action": links.subscribe(newsletter, absolute_url=False),
        "form_email": form_email,
        "errors": errors or [],
        "plans": list(billing_selectors.plans_on_offer(newsletter.pk)),
        "join_action": f"/{newsletter.slug}/join",
        "checkout_canceled": checkout_canceled,
        "member_login_url": f"{reverse('account_request_login_code')}?next=/{newsletter.slug}/issues/",
    }


def _render_page(request, newsletter, *, status=200, **context):
    return _to_stripe(_in_language(
        newsletter,
        lambda: render(
            request,
            "pages/page.html",
            _page_context(request, newsletter, **context),
            status=status,
        ),
    ))


def page(request, slug):
    """The link-in-bio page: /<slug>/, with ?ref= or utm_source= naming where the fan came from."""
    newsletter = get_object_or_404(Newsletter, slug=slug)
    return _render_page(request, newsletter, source=_source_from(request.GET),
                        checkout_canceled=request.GET.get("checkout") == "canceled")


def source_link(request, slug, code):
    """/<slug>/r/<code>: the page, with the link's source carried into the form; counts the visit."""
    newsletter = get_object_or_404(Newsletter, slug=slug)
    link = get_object_or_404(SourceLink, newsletter=newsletter, code=code)
    SourceLink.objects.filter(id=link.id).update(visits=F("visits") + 1)
    return _render_page(request, newsletter, source=link.source)


def _render_embed(request, newsletter, *, status=200, done=False, source="", form_email="", errors=None):
    context = {
        "newsletter": newsletter,
        "consent_text": consent_text_for(newsletter),
        "subscribe_action": links.subscribe(newsletter, absolute_url=False),
        "source": source,
        "done": done,
        "form_email": form_email,
        "errors": errors or [],
        "page_url": links.page(newsletter),
    }
    response = _in_language(newsletter, lambda: _embed_page(request, context, status))
    response.xframe_options_exempt = True  # meant to sit in an iframe on the creator's own site
    return response


@csp_override(settings.CSP_EMBED)  # frameable from any origin; see settings
def _embed_page(request, context, status):
    return render(request, "pages/embed.html", context, status=status)


def embed(request, slug):
    """/<slug>/embed: the compact form for an iframe; success shows inside the frame."""
    newsletter = get_object_or_404(Newsletter, slug=slug)
    return _render_embed(request, newsletter, source=_source_from(request.GET) or "embed")


def _wants_json(request):
    return request.GET.get("format") == "json" or "application/json" in request.headers.get("Accept", "")


def _cors(response):
    # Any site may post a signup; no credentials are involved, so `*` is safe.
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type, Accept"
    response.headers["Cache-Control"] = "no-store"
    return response


@csrf_exempt
def subscribe(request, slug):
    """/<slug>/subscribe: the form post from the page, the embeds, or any site (JSON when asked)."""
    if request.method == "OPTIONS":
        return _cors(HttpResponse(status=204))
    newsletter = get_object_or_404(Newsletter, slug=slug)
    if request.method != "POST":
        return HttpResponseRedirect(f"/{newsletter.slug}/")
    with translation.override(newsletter.language):
        response = _subscribe(request, newsletter)
    response.headers["Content-Language"] = newsletter.language
    return _cors(response)


def _subscribe(request, newsletter):
    as_json = _wants_json(request)
    try:
        too_big = int(request.META.get("CONTENT_LENGTH") or 0) > MAX_SIGNUP_BODY
    except ValueError:
        too_big = True
    data = None
    if not too_big:
        try:
            data = request.POST
        except (
            RequestDataTooBig,
            TooManyFieldsSent,
            SuspiciousOperation,
            MultiPartParserError,
            UnreadablePostError,
        ):
            data = None
    if data is None:
        message = _("That form was too large or malformed. Please try again.")
        return _answer_error(
            request, newsletter, as_json, {"form": [message]}, status=413 if too_big else 400
        )

    form_kind = data.get("form", "")
    if form_kind not in FORMS:
        form_kind = "api" if as_json else "embed"
    source = _source_from(data) or _source_from(request.GET)
    form = SignupForm(data, newsletter=newsletter)
    valid = form.is_valid()
    email = form.cleaned_data.get("email") if valid else None

    ip = client_ip(request)
    ip_ok, address_ok, retry_after = signup_allowed(ip=ip, address=email)
    if not ip_ok:
        message = _("Too many signups from your network just now. Please try again in a few minutes.")
        response = _answer_error(
            request, newsletter, as_json, {"form": [message]}, status=429, form_kind=form_kind, source=source
        )
        response.headers["Retry-After"] = str(retry_after)
        return response
    if data.get(HONEYPOT):
        return _answer_ok(request, newsletter, as_json, form_kind)  # a bot: thank it, keep nothing
    if not valid:
        return _answer_error(
            request,
            newsletter,
            as_json,
            form.errors_by_field(),
            status=400,
            form_kind=form_kind,
            source=source,
            form_email=str(data.get("email", ""))[:254],
        )
    if address_ok:
        subscriber_services.signup(
            newsletter=newsletter,
            email=email,
            name=form.cleaned_data.get("name", ""),
            source=source,
            form=form_kind,
            consent_text=consent_text_for(newsletter),
            ip=ip,
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        )
    # Same words whatever happened, so the form cannot be used to learn who is on the list.
    return _answer_ok(request, newsletter, as_json, form_kind)


def _success_message(newsletter):
    return _(
        "Almost there! We sent an email to confirm your address. Open it and press the button to finish subscribing to %(name)s."
    ) % {"name": newsletter.name}


def _answer_ok(request, newsletter, as_json, form_kind):
    if as_json:
        return JsonResponse({"ok": True, "message": _success_message(newsletter)})
    if form_kind == "iframe":
        return _render_embed(request, newsletter, done=True)
    context = {
        "newsletter": newsletter,
        "message": _success_message(newsletter),
        "page_url": f"/{newsletter.slug}/",
    }
    return render(request, "pages/subscribed.html", context)


def _answer_error(request, newsletter, as_json, errors, *, status, form_kind="", source="", form_email=""):
    messages = [message for field_messages in errors.values() for message in field_messages]
    if as_json:
        return JsonResponse({"ok": False, "message": messages[0], "errors": errors}, status=status)
    if form_kind == "iframe":
        return _render_embed(
            request, newsletter, status=status, source=source, form_email=form_email, errors=messages
        )
    return _to_stripe(render(
        request,
        "pages/page.html",
        _page_context(request, newsletter, source=source, form_email=form_email, errors=messages),
        status=status,
    ))


def _to_stripe(response):
    """The bio page's plan forms end at Stripe Checkout (what csp_override does, for a response made here)."""
    response._csp_config = settings.CSP_TO_STRIPE
    return response
