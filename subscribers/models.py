from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .addresses import normalize_email


class Subscriber(models.Model):
    """One person, one row per address whatever its case."""

    email = models.EmailField(max_length=254)
    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="subscriber_email_unique_ci"),
        ]
        ordering = ["-created_at"]

    def __str__(self):
        return self.email

    def clean(self):
        self.email = normalize_email(self.email)  # before the unique check of a form sees it

    def save(self, *args, **kwargs):
        self.email = normalize_email(self.email)  # every writer, the admin included
        super().save(*args, **kwargs)


class SubscriptionStatus(models.TextChoices):
    PENDING = "pending", _("Waiting for confirmation")
    ACTIVE = "active", _("Active")
    UNSUBSCRIBED = "unsubscribed", _("Unsubscribed")
    BOUNCED = "bounced", _("Bounced")
    COMPLAINED = "complained", _("Complained")


class SubscriptionTier(models.TextChoices):
    FREE = "free", _("Free")
    PAID = "paid", _("Paid")
    COMPED = "comped", _("Complimentary")  # a member who does not pay: gets what paid members get


SubscriptionTier.MEMBERS = (SubscriptionTier.PAID, SubscriptionTier.COMPED)


class Subscription(models.Model):
    """A subscriber following one newsletter, with how and when they said yes."""

    Status = SubscriptionStatus
    Tier = SubscriptionTier

    # No single-column indexes: the unique pair leads with the subscriber, the audience index
    # with the newsletter, and an import writes a million rows through every index there is.
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="subscriptions", db_index=False
    )
    newsletter = models.ForeignKey(
        "newsletters.Newsletter", on_delete=models.CASCADE, related_name="subscriptions", db_index=False
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    tier = models.CharField(max_length=8, choices=Tier.choices, default=Tier.FREE)
    source = models.CharField(max_length=100, blank=True, help_text=_("Which link or form brought them."))

    # Consent record: what the fan saw and agreed to, and when they confirmed.
    consent_form = models.CharField(max_length=100, blank=True)
    consent_text = models.TextField(blank=True)
    consent_at = models.DateTimeField(null=True, blank=True)
    consent_ip = models.GenericIPAddressField(null=True, blank=True)
    consent_user_agent = models.CharField(max_length=500, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "newsletter"], name="subscription_unique_pair"),
            models.CheckConstraint(
                condition=models.Q(status__in=SubscriptionStatus.values), name="subscription_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(tier__in=SubscriptionTier.values), name="subscription_tier_valid"
            ),
        ]
        indexes = [models.Index(fields=["newsletter", "status"], name="subscription_audience_idx")]
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.subscriber} → {self.newsletter}"


class SubscriptionEventKind(models.TextChoices):
    SIGNUP = "signup", _("Signed up")
    CONFIRM = "confirm", _("Confirmed")
    UNSUBSCRIBE = "unsubscribe", _("Unsubscribed")
    REJOIN = "rejoin", _("Rejoined")
    INVITE = "invite", _("Invited by the creator")
    IMPORT = "import", _("Imported")
    BOUNCE = "bounce", _("Bounced")
    COMPLAINT = "complaint", _("Complained")
    TIER = "tier", _("Tier changed")


class SubscriptionEvent(models.Model):
    """One change of a subscription's status or tier, appended by the one writer
    (subscribers.services.subscription_change) and never edited: the subscription's history,
    with the consent record of that moment."""

    Kind = SubscriptionEventKind

    # Like the delivery ledger, the history carries no foreign-key constraints: an import appends
    # a million events in one statement and the per-row checks took a third of its time. Only
    # the one writer appends, to a subscription it has just written or locked; Django's cascade
    # (subscription deleted, user deleted) still removes or clears the rows, through the indexes.
    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="events", db_index=False, db_constraint=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    at = models.DateTimeField(default=timezone.now)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    from_tier = models.CharField(max_length=8, blank=True)
    to_tier = models.CharField(max_length=8, blank=True)
    # Who or what caused it: "fan", "creator", "operator", "system", "stripe", "import"...
    actor = models.CharField(max_length=40)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_index=False, db_constraint=False,
    )
    detail = models.TextField(blank=True)
    consent_form = models.CharField(max_length=100, blank=True)
    consent_text = models.TextField(blank=True)
    consent_at = models.DateTimeField(null=True, blank=True)
    consent_ip = models.GenericIPAddressField(null=True, blank=True)
    consent_user_agent = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=SubscriptionEventKind.values), name="subscriptionevent_kind_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["subscription", "at"], name="subscriptionevent_history_idx"),
            # Most events have no user (fans, imports, Stripe): only the others are indexed.
            models.Index(fields=["actor_user"], condition=models.Q(actor_user__isnull=False),
                         name="subscriptionevent_user_idx"),
        ]
        ordering = ["at", "id"]

    def __str__(self):
        return f"{self.get_kind_display()} {self.at:%Y-%m-%d %H:%M}"


class Suppression(models.Model):
    """An address no newsletter here may mail: it bounced hard, complained, or asked by other means."""

    class Reason(models.TextChoices):
        BOUNCE = "bounce", _("Hard bounce")
        COMPLAINT = "complaint", _("Spam complaint")
        MANUAL = "manual", _("Added by hand")

    email = models.EmailField(max_length=254)
    reason = models.CharField(max_length=16, choices=Reason.choices, default=Reason.MANUAL)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="suppression_email_unique_ci")]
        ordering = ["-created_at"]

    def __str__(self):
        return self.email

    def clean(self):
        self.email = normalize_email(self.email)

    def save(self, *args, **kwargs):
        self.email = normalize_email(self.email)  # matched against subscribers' addresses, spelled alike
        super().save(*args, **kwargs)
class ErasedAddress(models.Model):
    """What is left of a person who asked to be forgotten: the digest of their address
    (addresses.erased_digest), so an import from another platform does not bring them back.
    `newsletter` empty: erased from every newsletter here."""

    digest = models.CharField(max_length=64)
    newsletter = models.ForeignKey(
        "newsletters.Newsletter", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["digest", "newsletter"], name="erasedaddress_unique"),
            models.UniqueConstraint(
                fields=["digest"], condition=models.Q(newsletter__isnull=True), name="erasedaddress_everywhere_unique"
            ),
        ]
        verbose_name = _("erased address")

    def __str__(self):
        return self.digest[:12]


class SourceLink(models.Model):
    """A short address a creator pastes into one bio (/<slug>/r/<code>); signups through it carry its source."""

    newsletter = models.ForeignKey("newsletters.Newsletter", on_delete=models.CASCADE, related_name="source_links")
    source = models.CharField(
        max_length=100, help_text=_("Stored on each subscription made through this link, e.g. tiktok.")
    )
    code = models.SlugField(max_length=40, help_text=_("The end of the short address: /slug/r/code."))
    visits = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["newsletter", "code"], name="sourcelink_code_unique")]
        ordering = ["newsletter", "code"]

    def __str__(self):
        return f"/{self.newsletter.slug}/r/{self.code}"


class OwedEmailKind(models.TextChoices):
    CONFIRMATION = "confirmation", _("Confirmation")
    WELCOME = "welcome", _("Welcome")
    DATA_EXPORT = "data_export", _("Data export")


class OwedEmailStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    QUEUED = "queued", _("Handed to a worker")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    SKIPPED = "skipped", _("Skipped (no longer needed)")
    FAILED = "failed", _("Failed")
    UNKNOWN = "unknown", _("Unknown (worker lost mid-send)")


class OwedEmail(models.Model):
    """The transactional outbox: an email a write owes, recorded in that write's transaction.

    The dispatcher hands pending rows to Celery; the sender claims each row before it sends,
    so a duplicated task finds nothing to do.
    """

    Kind = OwedEmailKind
    Status = OwedEmailStatus

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="owed_emails")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    due_at = models.DateTimeField(default=timezone.now)
    claim = models.CharField(max_length=32, blank=True, editable=False)
    queued_at = models.DateTimeField(null=True, blank=True)
    sending_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # The provider's id of the message that went out (SES's MessageId, or the Message-ID header).
    message_id = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(kind__in=OwedEmailKind.values), name="owedemail_kind_valid"),
            models.CheckConstraint(
                condition=models.Q(status__in=OwedEmailStatus.values), name="owedemail_status_valid"
            ),
        ]
        indexes = [
            # The dispatcher's scan: only unfinished rows, so it stays small however many were sent.
            models.Index(
                fields=["status", "due_at"],
                name="owedemail_unfinished_idx",
                condition=models.Q(status__in=["pending", "queued", "sending"]),
            ),
        ]
        ordering = ["-id"]
        verbose_name = _("owed email")

    def __str__(self):
        return f"{self.get_kind_display()} → {self.subscription}"
