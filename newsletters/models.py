from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from subscribers.addresses import normalize_email

from .slugs import validate_public_slug
from .validators import validate_header_safe


class Newsletter(models.Model):
    """A publication: who sends it, to whom it belongs, how it looks."""

    class Language(models.TextChoices):
        ENGLISH = "en", "English"
        VIETNAMESE = "vi", "Tiếng Việt"

    slug = models.SlugField(
        max_length=60, unique=True, validators=[validate_public_slug],
        help_text=_("The page's address: /slug/. Words the site itself uses are reserved."),
    )
    name = models.CharField(max_length=200, validators=[validate_header_safe])
    description = models.TextField(blank=True)
    sender_name = models.CharField(max_length=200, blank=True, validators=[validate_header_safe])
    sender_email = models.EmailField(blank=True, validators=[validate_header_safe])
    reply_to = models.EmailField(blank=True, validators=[validate_header_safe])
    postal_address = models.TextField(
        blank=True, help_text=_("Shown in every email's footer; the law in most countries asks for it.")
    )
    language = models.CharField(max_length=5, choices=Language.choices, default=Language.ENGLISH)
    owners = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="newsletters", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # The link-in-bio page and what a fan agrees to there.
    avatar_url = models.URLField(max_length=500, blank=True, help_text=_("A square picture, shown on the page."))
    consent_text = models.TextField(
        blank=True,
        help_text=_("Shown under the signup form and kept with each signup. Empty: a standard sentence."),
    )
    # Sent once a fan confirms, when both are filled in.
    welcome_subject = models.CharField(max_length=200, blank=True, validators=[validate_header_safe])
    welcome_body = models.TextField(
        blank=True, help_text=_("Plain text; blank lines make paragraphs and links become clickable.")
    )
    blocked_domains = models.TextField(
        blank=True,
        help_text=_("Email domains that may not sign up, one per line (subdomains included)."),
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(language__in=["en", "vi"]), name="newsletter_language_valid"),
        ]

    def __str__(self):
        return self.name

    def _spell_addresses(self):
        # An IDN domain in its IDNA form: the From and Reply-To headers and the envelope carry it as is.
        self.sender_email, self.reply_to = normalize_email(self.sender_email), normalize_email(self.reply_to)

    def clean(self):
        self._spell_addresses()

    def save(self, *args, **kwargs):
        self._spell_addresses()
        super().save(*args, **kwargs)


class SocialLink(models.Model):
    """A link on the creator's page: their TikTok, Instagram, YouTube, site."""

    newsletter = models.ForeignKey(Newsletter, on_delete=models.CASCADE, related_name="social_links")
    label = models.CharField(max_length=60)
    url = models.URLField(max_length=500)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self):
        return self.label


class IssueStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    SCHEDULED = "scheduled", _("Scheduled")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")


class IssueAudience(models.TextChoices):
    EVERYONE = "everyone", _("Everyone")
    PAID = "paid", _("Paid members")


class Issue(models.Model):
    Status = IssueStatus
    Audience = IssueAudience

    newsletter = models.ForeignKey(Newsletter, on_delete=models.CASCADE, related_name="issues")
    title = models.CharField(max_length=300, validators=[validate_header_safe])
    slug = models.SlugField(max_length=120)
    body_markdown = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    audience = models.CharField(max_length=16, choices=Audience.choices, default=Audience.EVERYONE)
    show_on_web = models.BooleanField(default=True)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    send_started_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["newsletter", "slug"], name="issue_slug_unique_per_newsletter"),
            models.CheckConstraint(
                condition=models.Q(status__in=IssueStatus.values), name="issue_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(audience__in=IssueAudience.values), name="issue_audience_valid"
            ),
        ]

    def __str__(self):
        return self.title


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    CLAIMED = "claimed", _("Claimed by a worker")
    SENDING = "sending", _("Handed to the transport")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")
    UNKNOWN = "unknown", _("Unknown (worker lost mid-send)")
    SKIPPED = "skipped", _("Skipped (left the list before their turn)")


class Delivery(models.Model):
    """The ledger: one row per issue and recipient, frozen when a send starts.

    pending -> claimed (a worker's batch holds it, under a DeliveryClaim's lease) -> sending (on
    the wire right now) -> sent | failed | pending again (transient error or throttling). A lease
    that runs out turns claimed rows back to pending and sending rows to unknown. ARCHITECTURE.md
    has the whole state machine.
    """

    Status = DeliveryStatus

    # A snapshot writes a million rows at once, so the ledger carries no foreign-key constraints
    # (checking them doubled its time) and no index by subscriber (random inserts into a
    # growing index). Rows come from a join that guarantees both ends exist; deleting an
    # issue or erasing a subscriber cascades in Django, which scans the ledger for the latter.
    issue = models.ForeignKey(
        Issue, on_delete=models.CASCADE, related_name="deliveries", db_index=False, db_constraint=False
    )
    subscriber = models.ForeignKey(
        "subscribers.Subscriber", on_delete=models.CASCADE, related_name="deliveries",
        db_index=False, db_constraint=False,
    )
    variant = models.CharField(max_length=8, default="free", help_text=_("Which rendition: free or paid."))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Set at the first transient failure: past it, the next one fails the row (a time, not a count).
    retry_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["issue", "subscriber"], name="delivery_unique_pair"),
            models.CheckConstraint(
                condition=models.Q(status__in=DeliveryStatus.values), name="delivery_status_valid"
            ),
        ]
        # Claims scan one issue's pending rows in id order.
        indexes = [models.Index(fields=["issue", "status", "id"], name="delivery_issue_status_idx")]

    def __str__(self):
        return f"{self.issue} → {self.subscriber}"


class DeliveryClaim(models.Model):
    """One worker's batch of one issue: its rows carry the token, this row carries the lease.

    The worker renews the lease with every hand-over (one small row, in the same statement);
    when it runs out the watchdog takes the rows back. Deleted when the batch ends.
    """

    token = models.UUIDField(primary_key=True)
    issue_id = models.BigIntegerField(db_index=True)
    worker = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.worker} on issue {self.issue_id}"


class Rendition(models.Model):
    """An issue rendered once for one audience when its send starts; workers only personalize it."""

    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="renditions")
    variant = models.CharField(max_length=8)
    headers = models.TextField(help_text=_("Header lines shared by every recipient."))
    text = models.TextField()
    html = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issue", "variant"], name="rendition_unique_variant")]


class OutboxMessage(models.Model):
    """The dev outbox: with EMAIL_URL=outbox:// every email lands here instead of the internet."""

    mailer = models.CharField(max_length=40, blank=True)
    # Whose mail this is, by id: found from the X-Newsletter header when the message is kept, so a
    # newsletter renamed later, or a new one given the old name, never sees another's messages.
    newsletter = models.ForeignKey(
        Newsletter, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    newsletter_slug = models.SlugField(max_length=60, blank=True, help_text=_("From the X-Newsletter header."))
    from_email = models.CharField(max_length=300)
    to = models.TextField(help_text=_("Recipients, one per line."))
    subject = models.CharField(max_length=998)
    text_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    raw = models.BinaryField(help_text=_("The whole message as it would go on the wire."))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("dev outbox message")

    def __str__(self):
        return self.subject
