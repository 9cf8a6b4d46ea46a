"""The REST API at /api/v1/ (django-ninja): a creator's token reaches their own newsletters.

OpenAPI 3.1 at /api/v1/openapi.json. No docs page: ninja's loads Swagger UI from a CDN, which the
site's Content-Security-Policy forbids; any OpenAPI viewer reads the JSON.
"""

from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, ValidationError

from . import audience, issues
from .access import TokenAuth

api = NinjaAPI(
    title="ownedaudience",
    version="1",
    description=(
        "Your newsletters, their subscribers and issues. Make a token in the admin (API tokens) and send it "
        "as `Authorization: Bearer oa_…`. A token reaches the newsletters its creator owns; anything else "
        "answers 404. Errors are JSON: `{\"detail\": \"…\"}`."
    ),
    urls_namespace="api",
    docs_url=None,
    auth=TokenAuth(),
)


@api.exception_handler(AuthenticationError)
def unauthorized(request, exc):
    response = api.create_response(
        request, {"detail": "Give a live API token: Authorization: Bearer oa_…"}, status=401
    )
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@api.exception_handler(Http404)
def not_found(request, exc):
    return api.create_response(request, {"detail": "Not found."}, status=404)


@api.exception_handler(ValidationError)
def invalid(request, exc):
    def where(error):
        loc = [str(part) for part in error.get("loc", ()) if part != "payload"]
        return ".".join(loc[1:] or loc)

    detail = "; ".join(f"{where(error)}: {error.get('msg', 'invalid')}" for error in exc.errors)
    body = {"detail": detail or "Invalid input.", "errors": exc.errors}
    return api.create_response(request, body, status=422)


api.add_router("", audience.router)
api.add_router("", issues.router)
