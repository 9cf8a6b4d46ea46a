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
    # Engagement, off by default: counted in aggregate, per fan only when the creator says so.
    track_clicks = models.BooleanField(
        default=False, help_text=_("Links in emails go through this site, which counts the clicks.")
    )
    track_opens = models.BooleanField(
        default=False, help_text=_("A tiny image counts opens. Many mail apps load it on their own: a rough figure.")
    )
    engagement_per_subscriber = models.BooleanField(
        default=False,
        help_text=_("Keep who clicked and opened, per fan; every email's footer then says so."),
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
    PAUSED = "paused", _("Paused")


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
    # Why a send stopped itself (the transport refused the account, too many bounces): resumed by a person.
    paused_reason = models.TextField(blank=True)
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
