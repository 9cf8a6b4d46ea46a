import re

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLResolver, include, path, re_path
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.csp import csp_override

from .health import healthz

admin.site.site_header = "ownedaudience"
admin.site.site_title = "ownedaudience"
admin.site.index_title = "Your newsletters"


def _with_policy(patterns, policy):
    """Give every view under `patterns` the Content-Security-Policy `policy`."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            _with_policy(pattern.url_patterns, policy)
        else:
            pattern.callback = csp_override(policy)(pattern.callback)
    return patterns


_admin_patterns, _admin_app, _admin_namespace = admin.site.urls


@xframe_options_sameorigin
@csp_override(settings.CSP_OUTBOX_PREVIEW)
def outbox_html(request, pk):
    """A dev outbox message's HTML alone, for the frame on its admin page (see CSP_OUTBOX_PREVIEW)."""
    from delivery.models import OutboxMessage

    model_admin = admin.site.get_model_admin(OutboxMessage)
    message = get_object_or_404(model_admin.get_queryset(request), pk=pk)
    if not model_admin.has_view_permission(request, message):
        raise PermissionDenied
    # Links open in a new tab: this frame may not navigate, and the site's pages refuse to be framed.
    base = '<base target="_blank">'
    html, found = re.subn(r"(<head\b[^>]*>)", rf"\1{base}", message.html_body, count=1, flags=re.IGNORECASE)
    return HttpResponse(html if found else base + html, content_type="text/html; charset=utf-8")


def moved_admin(request, model, rest):
    """The ledger and the dev outbox moved from the newsletters app to delivery: old bookmarks follow."""
    query = request.META.get("QUERY_STRING", "")
    return HttpResponsePermanentRedirect(f"/admin/delivery/{model}/{rest}" + (f"?{query}" if query else ""))


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    re_path(r"^admin/newsletters/(?P<model>delivery|outboxmessage)/(?P<rest>.*)$", moved_admin),
    # Before the admin's own routes, whose last one answers every other address under admin/.
    path("admin/outbox/<int:pk>/html", admin.site.admin_view(outbox_html), name="outbox_html"),
    path("admin/", (_with_policy(_admin_patterns, settings.CSP_ADMIN), _admin_app, _admin_namespace)),
    path("api/v1/", include("api.urls")),
    path("billing/", include("billing.urls")),
    path("feedback/", include("feedback.urls")),
    path("account/", include("pages.account_urls")),
    path("", include("pages.engagement")),  # /l/ and /o/: counted links and the open pixel
    path("", include("subscribers.urls")),
    path("", include("pages.issue_urls")),
    # Last: /<slug>/… matches any word, so every fixed route above must come first.
    path("", include("pages.urls")),
]
