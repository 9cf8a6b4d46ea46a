from django.conf import settings
from django.contrib import admin
from django.db.models import Count, Q
from django.utils.html import format_html, format_html_join

from ownedaudience.scoping import CreatorScopedAdmin
from subscribers.models import SourceLink, Subscription

from . import embed
from .models import Delivery, Issue, Newsletter, OutboxMessage, SocialLink


class SocialLinkInline(admin.TabularInline):
    model = SocialLink
    extra = 1
    fields = ("label", "url", "position")


class SourceLinkInline(admin.TabularInline):
    model = SourceLink
    extra = 1
    fields = ("source", "code", "short_url", "visits")
    readonly_fields = ("short_url", "visits")
    verbose_name = "short link for a bio"
    verbose_name_plural = "short links for bios (each signup through one is tagged with its source)"

    @admin.display(description="paste this")
    def short_url(self, obj):
        if not obj.pk:
            return "—"
        return f"{settings.SITE_URL}/{obj.newsletter.slug}/r/{obj.code}"


AUDIENCE_DISPLAY = ("public_page", "embed_forms", "signups_by_source")


@admin.register(Newsletter)
class NewsletterAdmin(CreatorScopedAdmin):
    owner_path = "owners"
    list_display = ("name", "slug", "language", "active_subscribers")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [SocialLinkInline, SourceLinkInline]
    fieldsets = [
        (None, {"fields": ("name", "slug", "description", "language")}),
        ("Link-in-bio page", {"fields": ("public_page", "avatar_url", "consent_text")}),
        ("Embed forms and growth", {"fields": ("embed_forms", "signups_by_source")}),
        ("Welcome email, sent after a fan confirms", {"fields": ("welcome_subject", "welcome_body")}),
        ("Signup defences", {"fields": ("blocked_domains",)}),
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
        return AUDIENCE_DISPLAY if request.user.is_superuser else AUDIENCE_DISPLAY + ("owners",)

    @admin.display(description="public page")
    def public_page(self, obj):
        if not obj.pk:
            return "—"
        url = f"{settings.SITE_URL}/{obj.slug}/"
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a> (add <code>?ref=tiktok</code> '
                           "or use a short link below to see where fans come from)", url, url)

    @admin.display(description="embed forms")
    def embed_forms(self, obj):
        if not obj.pk:
            return "—"
        return format_html(
            "<p>Plain HTML: works on any site, even with JavaScript off; the answer opens on this site.</p>"
            '<textarea readonly rows="12" cols="90" style="font-family:monospace" '
            'onclick="this.select()">{}</textarea>'
            "<p>Frame: the answer shows inside the form, in place.</p>"
            '<textarea readonly rows="3" cols="90" style="font-family:monospace" onclick="this.select()">{}</textarea>'
            "<p>Your own JavaScript can also POST <code>email</code> to <code>{}</code> with "
            "<code>Accept: application/json</code> and read <code>{{\"ok\": …, \"message\": …}}</code>.</p>",
            embed.html_snippet(obj), embed.iframe_snippet(obj), f"{settings.SITE_URL}/{obj.slug}/subscribe",
        )

    @admin.display(description="signups by source")
    def signups_by_source(self, obj):
        if not obj.pk:
            return "—"
        rows = (
            Subscription.objects.filter(newsletter=obj)
            .values("source")
            .annotate(
                active=Count("id", filter=Q(status="active")),
                pending=Count("id", filter=Q(status="pending")),
                left=Count("id", filter=Q(status="unsubscribed")),
            )
            .order_by("-active", "source")[:50]
        )
        if not rows:
            return "No signups yet."
        body = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((row["source"] or "(direct)", row["active"], row["pending"], row["left"]) for row in rows),
        )
        return format_html(
            "<table><thead><tr><th>source</th><th>active</th><th>waiting to confirm</th><th>left</th></tr>"
            "</thead><tbody>{}</tbody></table>", body,
        )

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
