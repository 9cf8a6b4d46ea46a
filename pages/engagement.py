"""The addresses in a tracked email (delivery/engagement.py): /l/ counted links, /o/ the open pixel.

Included at the root, before the routes under a newsletter's slug ("l" and "o" are reserved).
A link goes only to the address stored for it: a bad or unknown token is a 404, and nothing in
the request (a `?next=`, another path) can choose where it leads. The pixel is always the
image, whatever its token: a bad one counts nothing (a mail app has no use for an error page).
Only GET counts; HEAD, what link scanners and prefetchers send, is answered and counts nothing.
"""

import base64

from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.urls import path
from django.views.decorators.http import require_safe

from delivery import engagement

# A 1×1 transparent GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def _not_stored(response):
    response["Cache-Control"] = "no-store"
    return response


@require_safe
def click(request, token, recipient=""):
    url = engagement.follow_link(token, recipient, count=request.method == "GET")
    if url is None:
        raise Http404
    return _not_stored(HttpResponseRedirect(url))


@require_safe
def open_pixel(request, token, recipient=""):
    if request.method == "GET":
        engagement.record_open(token, recipient)
    return _not_stored(HttpResponse(PIXEL, content_type="image/gif"))


app_name = "engagement"

urlpatterns = [
    path("l/<str:token>", click, name="click"),
    path("l/<str:token>/<str:recipient>", click, name="click_by"),
    path("o/<str:token>.gif", open_pixel, name="open"),
    path("o/<str:token>/<str:recipient>.gif", open_pixel, name="open_by"),
]
