from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

FORMAT_CHOICES = [
    ("auto", _("Find out from the header row")),
    ("substack", "Substack (email_list.*.csv)"),
    ("substack_dashboard", _("Substack (Subscribers page export)")),
    ("mailchimp", "Mailchimp"),
    ("ghost", "Ghost"),
    ("kit", "Kit (ConvertKit)"),
    ("buttondown", "Buttondown"),
    ("beehiiv", "beehiiv"),
    ("ownedaudience", _("ownedaudience (subscribers.csv of an export)")),
]


class ImportStatus(models.TextChoices):
    QUEUED = "queued", _("Waiting for a worker")
    READING = "reading", _("Reading the file")
    WRITING = "writing", _("Writing the audience")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class Import(models.Model):
    """One subscriber file brought in from another platform, its progress and its report."""

    Status = ImportStatus

    newsletter = models.ForeignKey("newsletters.Newsletter", on_delete=models.CASCADE, related_name="imports")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    file = models.FileField(upload_to="imports/%Y/%m/", blank=True)
    file_name = models.CharField(max_length=255)
    format = models.CharField(max_length=24, choices=FORMAT_CHOICES, default="auto")
    detected_format = models.CharField(max_length=24, blank=True)
    attested = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    bytes_total = models.BigIntegerField(default=0)
    bytes_read = models.BigIntegerField(default=0)
    rows_read = models.PositiveIntegerField(default=0)
    # What the file holds, by the counting rules of the import guide: distinct addresses active,
    # suppressed and paid (active with a paid or comped tier), and rejected rows.
    active = models.PositiveIntegerField(default=0)
    suppressed = models.PositiveIntegerField(default=0)
    paid = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    # What this run changed here: a second run of the same file creates and changes nothing.
    created = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("subscriber import")
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=ImportStatus.values), name="import_status_valid"),
        ]

    def __str__(self):
        return f"{self.file_name} → {self.newsletter}"

    def counts(self):
        return {"active": self.active, "suppressed": self.suppressed, "paid": self.paid, "rejected": self.rejected}

    @property
    def percent(self):
        if self.status == ImportStatus.DONE:
            return 100
        if not self.bytes_total:
            return 0
        return min(99, int(100 * self.bytes_read / self.bytes_total))


class ImportRejection(models.Model):
    """A row of the file that was not imported, with its line number and why."""

    job = models.ForeignKey(Import, on_delete=models.CASCADE, related_name="rejections")
    line = models.PositiveIntegerField()
    value = models.CharField(max_length=254, blank=True)
    reason = models.CharField(max_length=300)

    class Meta:
        ordering = ["job", "line"]
        indexes = [models.Index(fields=["job", "line"], name="importrejection_report_idx")]

    def __str__(self):
        return f"line {self.line}: {self.reason}"
