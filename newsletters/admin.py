from django.contrib import admin
from django.db.models import Count, Q

from ownedaudience.scoping import CreatorScopedAdmin

from .models import Delivery, Issue, Newsletter, OutboxMessage, SocialLink


class SocialLinkInline(admin.TabularInline):
    model = SocialLink
    extra = 1
    fields = ("label", "url", "position")


@admin.register(Newsletter)
class NewsletterAdmin(CreatorScopedAdmin):
    owner_path = "owners"
    list_display = ("name", "slug", "language", "active_subscribers")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [SocialLinkInline]
    fieldsets = [
        (None, {"fields": ("name", "slug", "description", "language")}),
        ("Sender", {"fields": ("sender_name", "sender_email", "reply_to", "postal_address")}),
        ("Owners", {"fields": ("owners",)}),
    ]
    filter_horizontal = ("owners",)

    def get_queryset(self, request):
        active = Count("subscriptions", filter=Q(subscriptions__status="active"))
        return super().get_queryset(request).annotate(active_subscribers=active)

    @admin.display(description="active subscribers", ordering="active_subscribers")
    def active_subscribers(self, obj):
        return obj.active_subscribers

    def get_readonly_fields(self, request, obj=None):
        # Only a superuser hands a newsletter to other logins.
        return () if request.user.is_superuser else ("owners",)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if not change:
            form.instance.owners.add(request.user)


@admin.register(Issue)
class IssueAdmin(CreatorScopedAdmin):
    owner_path = "newsletter__owners"
    list_display = ("title", "newsletter", "status", "audience", "show_on_web", "scheduled_at", "sent_at")
    list_filter = ("status", "audience", "newsletter")
    search_fields = ("title",)
    prepopulated_fields = {"slug": ("title",)}
    readonly_fields = ("status", "sent_at", "created_at", "updated_at")
    fields = (
        "newsletter",
        "title",
        "slug",
        "body_markdown",
        "audience",
        "show_on_web",
        "scheduled_at",
        "status",
        "sent_at",
        "created_at",
        "updated_at",
    )


@admin.register(Delivery)
class DeliveryAdmin(CreatorScopedAdmin):
    owner_path = "issue__newsletter__owners"
    list_display = ("issue", "subscriber", "status", "attempts", "sent_at", "message_id")
    list_filter = ("status",)
    search_fields = ("subscriber__email", "message_id")
    list_select_related = ("issue", "subscriber")
    raw_id_fields = ("issue", "subscriber")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    """The dev outbox, read in the browser; a creator sees the mail of their own newsletters."""

    list_display = ("subject", "to", "mailer", "newsletter_slug", "created_at")
    list_filter = ("mailer",)
    search_fields = ("to", "subject")
    fields = ("created_at", "mailer", "newsletter_slug", "from_email", "to", "subject", "text_body")
    readonly_fields = fields
    change_form_template = "admin/newsletters/outboxmessage/change_form.html"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        slugs = Newsletter.objects.filter(owners=request.user).values("slug")
        return queryset.filter(newsletter_slug__in=slugs)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
