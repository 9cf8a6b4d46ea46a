from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join

from ownedaudience import links
from ownedaudience.scoping import CreatorScopedAdmin, CreatorScopedTabularInline
from subscribers.models import SourceLink, Subscription

from . import embed, engine, rendering, selectors
from .models import Delivery, Issue, Newsletter, OutboxMessage, SocialLink


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
    change_form_template = "admin/newsletters/issue/change_form.html"
    fields = (
        "newsletter",
        "title",
        "slug",
        "body_markdown",
        "audience",
        "show_on_web",
        "scheduled_at",
        "status",
        "send_started_at",
        "sent_at",
    )

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status not in (Issue.Status.DRAFT, Issue.Status.SCHEDULED):
            # What went out is what the web version shows; only its visibility may change.
            return tuple(f for f in self.fields if f != "show_on_web")
        return ("scheduled_at", "status", "send_started_at", "sent_at")  # scheduling has its own button

    def get_prepopulated_fields(self, request, obj=None):
        return {} if obj is not None and obj.status != Issue.Status.DRAFT else self.prepopulated_fields

    def get_urls(self):
        route = lambda suffix, view, name: path(  # noqa: E731
            f"<path:object_id>/{suffix}", self.admin_site.admin_view(view), name=f"newsletters_issue_{name}"
        )
        return [
            route("send/", self.send_view, "send"),
            route("test/", self.test_view, "test"),
            route("schedule/", self.schedule_view, "schedule"),
            route("progress.json", self.progress_view, "progress"),
            route("retry-failed/", self.retry_failed_view, "retry_failed"),
            route("resolve-unknown/", self.resolve_unknown_view, "resolve_unknown"),
        ] + super().get_urls()

    def _issue_for_change(self, request, object_id):
        issue = self.get_object(request, object_id)
        if issue is None:
            raise Http404("No such issue.")
        if not self.has_change_permission(request, issue):
            raise PermissionDenied
        return issue

    def _back(self, issue):
        return HttpResponseRedirect(reverse("admin:newsletters_issue_change", args=[issue.pk]))

    def _problems(self, request, error):
        for problem in error.problems:
            self.message_user(request, problem, messages.ERROR)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        issue = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if issue is not None:
            extra_context.update({
                "send_panel": True,
                "audience_count": selectors.audience_count(issue),
                "counts": engine.progress(issue.pk),
                "problems": rendering.issue_problems(issue),
            })
        return super().change_view(request, object_id, form_url, extra_context)

    def send_view(self, request, object_id):
        issue = self._issue_for_change(request, object_id)
        if request.method == "POST":
            try:
                count = engine.start_send(issue.pk)
            except engine.IssueNotReady as error:
                self._problems(request, error)
            else:
                self.message_user(request, f"Sending to {count} subscribers.", messages.SUCCESS)
        return self._back(issue)

    def test_view(self, request, object_id):
        issue = self._issue_for_change(request, object_id)
        if request.method == "POST":
            to = request.POST.get("to") or request.user.email
            try:
                engine.send_test(issue.pk, to)
            except engine.IssueNotReady as error:
                self._problems(request, error)
            except engine.SendFailed as error:
                self.message_user(request, str(error), messages.ERROR)
            else:
                self.message_user(request, f"A test copy went to {to}.", messages.SUCCESS)
        return self._back(issue)

    def schedule_view(self, request, object_id):
        issue = self._issue_for_change(request, object_id)
        if request.method == "POST":
            when = parse_datetime(request.POST.get("when", ""))
            if when is None:
                self.message_user(request, "Give a date and time to send at.", messages.ERROR)
                return self._back(issue)
            if timezone.is_naive(when):
                when = timezone.make_aware(when)
            try:
                engine.schedule_send(issue.pk, when)
            except engine.IssueNotReady as error:
                self._problems(request, error)
            else:
                self.message_user(request, f"Scheduled for {when:%Y-%m-%d %H:%M %Z}.", messages.SUCCESS)
        return self._back(issue)

    def progress_view(self, request, object_id):
        issue = self.get_object(request, object_id)
        if issue is None:
            raise Http404("No such issue.")
        return JsonResponse({"status": issue.status, "counts": engine.progress(issue.pk)})

    def retry_failed_view(self, request, object_id):
        issue = self._issue_for_change(request, object_id)
        if request.method == "POST":
            count = engine.retry_failed(issue.pk)
            self.message_user(request, f"Sending {count} failed messages again.", messages.SUCCESS)
        return self._back(issue)

    def resolve_unknown_view(self, request, object_id):
        issue = self._issue_for_change(request, object_id)
        if request.method == "POST":
            resend = request.POST.get("resend") == "yes"
            count = engine.resolve_unknown(issue.pk, resend=resend)
            verb = "Sending again" if resend else "Counted as sent:"
            self.message_user(request, f"{verb} {count} messages of unknown fate.", messages.SUCCESS)
        return self._back(issue)


@admin.register(Delivery)
class DeliveryAdmin(CreatorScopedAdmin):
    owner_path = "issue__newsletter__owners"
    list_display = ("issue", "subscriber", "status", "attempts", "sent_at", "message_id", "error")
    list_filter = ("status", "issue")
    search_fields = ("subscriber__email", "message_id")
    list_select_related = ("issue", "subscriber")
    raw_id_fields = ("issue", "subscriber")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(CreatorScopedAdmin):
    """The dev outbox, read in the browser; a creator sees the mail of their own newsletters."""

    list_display = ("subject", "to", "mailer", "newsletter_slug", "created_at")
    list_filter = ("mailer",)
    search_fields = ("to", "subject")
    fields = ("created_at", "mailer", "newsletter_slug", "from_email", "to", "subject", "text_body")
    readonly_fields = fields
    change_form_template = "admin/newsletters/outboxmessage/change_form.html"

    def owned(self, request):
        # Filed by newsletter id when it was kept, never by a name that can change hands.
        return OutboxMessage.objects.filter(newsletter__owners=request.user).values("pk")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
