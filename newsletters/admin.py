from django.contrib import admin
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils.html import format_html, format_html_join

from ownedaudience import links
from ownedaudience.scoping import CreatorScopedAdmin, CreatorScopedTabularInline
from subscribers.models import SourceLink, Subscription
from subscribers.selectors import audience

from . import embed
from .models import Newsletter, SocialLink


class SocialLinkInline(CreatorScopedTabularInline):
    model = SocialLink
    owner_path = "newsletter__owners"
    extra = 1
    fields = ("label", "url", "position")


class SourceLinkInline(CreatorScopedTabularInline):
    model = SourceLink
    owner_path = "newsletter__owners"
    extra = 1
    fields = ("source", "code", "short_url", "visits")
    readonly_fields = ("short_url", "visits")
    verbose_name = "short link for a bio"
    verbose_name_plural = "short links for bios (each signup through one is tagged with its source)"

    @admin.display(description="paste this")
    def short_url(self, obj):
        if not obj.pk:
            return "—"
        return links.short_link(obj)


AUDIENCE_DISPLAY = ("public_page", "embed_forms", "signups_by_source")


@admin.register(Newsletter)
class NewsletterAdmin(CreatorScopedAdmin):
    owner_path = "owners"
    list_display = ("name", "slug", "language", "active_subscribers")
    search_fields = ("name", "slug")
    ordering = ("name",)  # explicit: the model's own ordering does not survive the annotation below
    prepopulated_fields = {"slug": ("name",)}
    inlines = [SocialLinkInline, SourceLinkInline]
    fieldsets = [
        (None, {"fields": ("name", "slug", "description", "language")}),
        ("Link-in-bio page", {"fields": ("public_page", "avatar_url", "consent_text")}),
        ("Embed forms and growth", {"fields": ("embed_forms", "signups_by_source")}),
        ("Welcome email, sent after a fan confirms", {"fields": ("welcome_subject", "welcome_body")}),
        ("Signup defences", {"fields": ("blocked_domains",)}),
        ("Sender", {"fields": ("sender_name", "sender_email", "reply_to", "postal_address")}),
        ("Clicks and opens (off unless you turn them on)", {
            "fields": ("track_clicks", "track_opens", "engagement_per_subscriber"),
        }),
        ("Owners", {"fields": ("owners",)}),
    ]
    filter_horizontal = ("owners",)

    def get_queryset(self, request):
        # The audience selector's count, the number "Send now to N" shows: active and not suppressed.
        reach = (
            audience(OuterRef("pk")).order_by().values("newsletter_id").annotate(n=Count("id")).values("n")
        )
        return super().get_queryset(request).annotate(active_subscribers=Coalesce(Subquery(reach), 0))

    @admin.display(description="audience (a send reaches)", ordering="active_subscribers")
    def active_subscribers(self, obj):
        return obj.active_subscribers

    def get_readonly_fields(self, request, obj=None):
        # Only a superuser hands a newsletter to other logins.
        return AUDIENCE_DISPLAY if request.user.is_superuser else AUDIENCE_DISPLAY + ("owners",)

    @admin.display(description="public page")
    def public_page(self, obj):
        if not obj.pk:
            return "—"
        url = links.page(obj)
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a> (add <code>?ref=tiktok</code> '
                           "or use a short link below to see where fans come from)", url, url)

    @admin.display(description="embed forms")
    def embed_forms(self, obj):
        if not obj.pk:
            return "—"
        return format_html(
            "<p>Plain HTML: works on any site, even with JavaScript off; the answer opens on this site.</p>"
            '<textarea readonly rows="12" cols="90">{}</textarea>'
            "<p>Frame: the answer shows inside the form, in place.</p>"
            '<textarea readonly rows="3" cols="90">{}</textarea>'
            "<p>Your own JavaScript can also POST <code>email</code> to <code>{}</code> with "
            "<code>Accept: application/json</code> and read <code>{{\"ok\": …, \"message\": …}}</code>.</p>",
            embed.html_snippet(obj), embed.iframe_snippet(obj), links.subscribe(obj),
        )

    @admin.display(description="signups by source")
    def signups_by_source(self, obj):
        if not obj.pk:
            return "—"
        rows = (
            Subscription.objects.filter(newsletter=obj)
            .values("source")
            .annotate(
                active=Count("id", filter=Q(status=Subscription.Status.ACTIVE)),
                pending=Count("id", filter=Q(status=Subscription.Status.PENDING)),
                left=Count("id", filter=Q(status=Subscription.Status.UNSUBSCRIBED)),
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
