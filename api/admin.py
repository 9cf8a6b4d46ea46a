from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from ownedaudience import links
from ownedaudience.scoping import CreatorScopedAdmin

from . import tokens
from .models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(CreatorScopedAdmin):
    """A creator sees, makes and revokes only their own tokens; a new one is shown once, on the page
    that answers its creation, and never stored."""

    list_display = ("name", "shown_as", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix")
    actions = ("revoke",)

    def owned(self, request):
        return ApiToken.objects.filter(user=request.user).values("pk")

    def get_fields(self, request, obj=None):
        return ("name",) if obj is None else ("name", *self.get_readonly_fields(request, obj))

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("shown_as", "user", "created_at", "last_used_at", "revoked_at")

    @admin.display(description="token")
    def shown_as(self, obj):
        return f"oa_{obj.prefix}_…" if obj.prefix else "—"

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        token, plain = tokens.token_create(user=request.user, name=obj.name)
        obj.pk = token.pk
        obj.refresh_from_db()
        request._new_api_token = plain  # for the answer to this request only

    def response_add(self, request, obj, post_url_continue=None):
        plain = getattr(request, "_new_api_token", None)
        if plain is None:
            return super().response_add(request, obj, post_url_continue)
        response = TemplateResponse(request, "admin/api/apitoken/created.html", {
            **self.admin_site.each_context(request),
            "title": "Your new API token",
            "opts": self.opts,
            "token": obj,
            "plain": plain,
            "back": reverse("admin:api_apitoken_changelist"),
            "schema_url": links.absolute(reverse("api:openapi-json")),
            "newsletters_url": links.absolute(reverse("api:list_newsletters")),
        })
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        count = tokens.tokens_revoke(queryset)
        self.message_user(request, f"Revoked {count} token{'s' if count != 1 else ''}.", messages.SUCCESS)
