"""The admin of sending: an issue's page with its send buttons and progress, the delivery ledger,
the dev outbox. The Issue admin lives here, above the engine it drives."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from newsletters import rendering, selectors
from newsletters.models import Issue
from ownedaudience.scoping import CreatorScopedAdmin
from transports import checks

from . import engagement, engine
from .models import Delivery, OutboxMessage


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
        "paused_reason",
        "send_started_at",
        "sent_at",
    )

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status not in (Issue.Status.DRAFT, Issue.Status.SCHEDULED):
            # What went out is what the web version shows; only its visibility may change.
            return tuple(f for f in self.fields if f != "show_on_web")
        return ("scheduled_at", "status", "paused_reason", "send_started_at", "sent_at")  # scheduling has its own button

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
            route("pause/", self.pause_view, "pause"),
            route("resume/", self.resume_view, "resume"),
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
                "engagement": engagement.issue_engagement(issue.pk),
            })
            if issue.status in (Issue.Status.DRAFT, Issue.Status.SCHEDULED) and issue.newsletter.sender_email:
                # Flagged before the first send: SES would refuse it, or receivers would see no signature.
                extra_context["sender_warnings"] = checks.sender_problems(issue.newsletter.sender_email)
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

    def pause_view(self, request, object_id):
        issue = self._issue_for_change(request, object_id)
        if request.method == "POST" and engine.pause(issue.pk, f"Paused by {request.user.get_username()}.", notify=False):
            self.message_user(request, "Paused. Everyone still pending stays in line.", messages.SUCCESS)
        return self._back(issue)

    def resume_view(self, request, object_id):
        issue = self._issue_for_change(request, object_id)
        if request.method == "POST":
            if engine.resume(issue.pk):
                self.message_user(request, "Sending again from where it stopped.", messages.SUCCESS)
            else:
                self.message_user(request, "This send is not paused.", messages.WARNING)
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
    change_form_template = "admin/delivery/outboxmessage/change_form.html"

    def owned(self, request):
        # Filed by newsletter id when it was kept, never by a name that can change hands.
        return OutboxMessage.objects.filter(newsletter__owners=request.user).values("pk")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
