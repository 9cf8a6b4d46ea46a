"""The admin of outgoing webhooks: a creator's endpoints, and the delivery log with "Send again"."""

import json

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from ownedaudience.scoping import CreatorScopedAdmin, CreatorScopedTabularInline

from . import dispatch
from .models import Attempt, Endpoint, EventType, Message


class EndpointForm(forms.ModelForm):
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices, widget=forms.CheckboxSelectMultiple,
        help_text="The events posted to this URL.",
    )

    class Meta:
        model = Endpoint
        fields = ("newsletter", "url", "description", "event_types", "active")


@admin.register(Endpoint)
class EndpointAdmin(CreatorScopedAdmin):
    owner_path = "newsletter__owners"
    form = EndpointForm
    list_display = ("url", "newsletter", "description", "active", "events", "created_at")
    list_filter = ("active", "newsletter")
    search_fields = ("url", "description")

    def get_fields(self, request, obj=None):
        fields = ["newsletter", "url", "description", "event_types", "active"]
        return fields + ["signing_secret", "created_at"] if obj else fields

    def get_readonly_fields(self, request, obj=None):
        return ("signing_secret", "created_at") if obj else ()

    @admin.display(description="events")
    def events(self, obj):
        return ", ".join(obj.event_types) or "—"

    @admin.display(description="signing secret")
    def signing_secret(self, obj):
        return format_html(
            "<code>{}</code><p>Each POST carries the headers <code>webhook-id</code>, <code>webhook-timestamp</code> "
            "and <code>webhook-signature</code> (Standard Webhooks). Check them with this secret before you trust "
            "the body, e.g. in Python <code>Webhook(secret).verify(body, headers)</code> from the "
            "<code>standardwebhooks</code> package, and skip a <code>webhook-id</code> you have already handled: "
            "a retry carries the same one.</p>",
            obj.secret,
        )


class AttemptInline(CreatorScopedTabularInline):
    model = Attempt
    owner_path = "message__endpoint__newsletter__owners"
    fields = ("at", "status_code", "duration_ms", "response", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Message)
class MessageAdmin(CreatorScopedAdmin):
    """The delivery log: every event owed to an endpoint, its attempts, and "Send again"."""

    owner_path = "endpoint__newsletter__owners"
    list_display = ("event_type", "webhook_id", "endpoint", "status", "attempts", "last_status_code", "created_at",
                    "delivered_at")
    list_filter = ("status", "event_type", "endpoint")
    search_fields = ("webhook_id",)
    list_select_related = ("endpoint",)
    fields = ("endpoint", "event_type", "webhook_id", "status", "attempts", "next_attempt_at", "retry_until",
              "last_status_code", "last_error", "created_at", "delivered_at", "body")
    readonly_fields = fields
    inlines = (AttemptInline,)
    actions = ("send_again",)

    @admin.display(description="body")
    def body(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_send_again_permission(self, request):
        return self.has_view_permission(request)  # the rows are the creator's own (get_queryset)

    @admin.action(description="Send again (same webhook-id)", permissions=["send_again"])
    def send_again(self, request, queryset):
        total = queryset.count()
        count = dispatch.send_again(queryset)
        self.message_user(request, f"Sending {count} webhooks again.", messages.SUCCESS)
        if total > count:
            self.message_user(request, f"{total - count} not delivered or failed yet were left alone.",
                              messages.WARNING)
