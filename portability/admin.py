"""Imports in the admin: upload a file, watch its progress bar, read the report of rejected rows."""

import csv
from itertools import chain

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from newsletters.models import Newsletter
from ownedaudience.scoping import CreatorScopedAdmin, visible

from .export_views import export_download
from .models import Import
from .tasks import run_import

ATTESTATION = _(
    "The active addresses in this file opted in to this newsletter on the old platform, and I can show it."
)


class ImportForm(forms.ModelForm):
    attested = forms.BooleanField(
        required=False, label=ATTESTATION,
        help_text=_("Recorded, with your name, on every subscription this import creates. Without it only "
                    "unsubscribed, bounced and other non-active rows are imported."),
    )

    class Meta:
        model = Import
        fields = ("newsletter", "file", "format", "attested")

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        if not upload:
            raise forms.ValidationError(_("Choose the file your old platform exported (CSV or zip)."))
        return upload


@admin.register(Import)
class ImportAdmin(CreatorScopedAdmin):
    owner_path = "newsletter__owners"
    form = ImportForm
    list_display = ("file_name", "newsletter", "status", "percent_done", "active", "suppressed", "paid", "rejected",
                    "created_at")
    list_filter = ("status", "newsletter")
    readonly = ("newsletter", "file_name", "format", "detected_format", "attested", "created_by", "status",
                "progress", "active", "suppressed", "paid", "rejected", "created", "changed", "error", "report",
                "created_at", "started_at", "finished_at")
    change_form_template = "admin/portability/import/change_form.html"
    change_list_template = "admin/portability/import/change_list.html"
    actions = ["queue_again"]

    def get_fields(self, request, obj=None):
        return self.readonly if obj else ("newsletter", "file", "format", "attested")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly if obj else ()

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)  # a report, not a form

    def save_model(self, request, obj, form, change):
        obj.created_by = request.user
        obj.file_name = form.cleaned_data["file"].name[:255]
        super().save_model(request, obj, form, change)
        transaction.on_commit(lambda: _queue(request, obj.pk))

    @admin.action(description=_("Queue the selected imports again (waiting or failed ones)"))
    def queue_again(self, request, queryset):
        jobs = list(queryset.filter(status__in=[Import.Status.QUEUED, Import.Status.FAILED]).exclude(file=""))
        for job in jobs:
            Import.objects.filter(pk=job.pk).update(status=Import.Status.QUEUED, error="")
            transaction.on_commit(lambda pk=job.pk: _queue(request, pk))
        self.message_user(request, _("%(count)d imports queued.") % {"count": len(jobs)})

    @admin.display(description=_("progress"))
    def percent_done(self, obj):
        return f"{obj.percent} %"

    @admin.display(description=_("progress"))
    def progress(self, obj):
        return format_html(
            '<progress id="import-progress" max="100" value="{}">{} %</progress> <span id="import-state">{}</span>',
            obj.percent, obj.percent, _("{rows} rows read").format(rows=obj.rows_read),
        )

    @admin.display(description=_("rejected rows"))
    def report(self, obj):
        rows = list(obj.rejections.order_by("line")[:100])
        if not rows:
            return "—"
        items = format_html("".join("<li>{}</li>" for _ in rows), *(
            f"line {row.line}: {row.reason} ({row.value})" if row.value else f"line {row.line}: {row.reason}"
            for row in rows
        ))
        url = reverse("admin:portability_import_report", args=[obj.pk])
        return format_html('<ul>{}</ul><a href="{}">{}</a>', items, url, _("Download every rejected row (CSV)"))

    def get_urls(self):
        return [
            path("export/", self.admin_site.admin_view(self.export_view), name="portability_export"),
            path("export/<int:newsletter_id>.zip", self.admin_site.admin_view(export_download),
                 name="portability_export_download"),
            path("<path:object_id>/progress.json", self.admin_site.admin_view(self.progress_view),
                 name="portability_import_progress"),
            path("<path:object_id>/report.csv", self.admin_site.admin_view(self.report_view),
                 name="portability_import_report"),
        ] + super().get_urls()

    def _job(self, request, object_id):
        job = self.get_object(request, object_id)
        if job is None:
            raise Http404("No such import.")
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        return job

    def export_view(self, request):
        """Everything of each newsletter the user may see, one zip per newsletter."""
        newsletters = visible(request, Newsletter.objects.order_by("name"))
        return TemplateResponse(request, "admin/portability/export.html", {
            **self.admin_site.each_context(request), "title": _("Export everything"), "opts": self.model._meta,
            "newsletters": newsletters,
        })

    def progress_view(self, request, object_id):
        job = self._job(request, object_id)
        return JsonResponse({"status": job.status, "percent": job.percent, "rows_read": job.rows_read,
                             "counts": job.counts(), "error": job.error})

    def report_view(self, request, object_id):
        job = self._job(request, object_id)

        class Echo:
            def write(self, value):
                return value

        writer = csv.writer(Echo())
        rows = (writer.writerow((r.line, r.value, r.reason)) for r in job.rejections.order_by("line").iterator(2000))
        response = StreamingHttpResponse(chain([writer.writerow(("line", "value", "reason"))], rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-rejected.csv"'
        return response


def _queue(request, import_id):
    try:
        run_import.delay(import_id)
    except Exception:  # the broker is away: say so; the file is kept and the import can be queued again
        messages.warning(request, _("The import is saved but could not be queued; a worker will need to run it."))
