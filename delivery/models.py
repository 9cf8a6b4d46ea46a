"""What sends mail: the delivery ledger and its leases, the frozen renditions, the dev outbox.

These models were the newsletters app's until the delivery app took them over; they keep their
tables (`db_table`), so no data moved.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _

from newsletters.models import Issue, Newsletter


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
        db_table = "newsletters_delivery"
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

    class Meta:
        db_table = "newsletters_deliveryclaim"

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
        db_table = "newsletters_rendition"
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
        db_table = "newsletters_outboxmessage"
        ordering = ["-id"]
        verbose_name = _("dev outbox message")

    def __str__(self):
        return self.subject


# --- engagement (delivery/engagement.py): counted in aggregate, per fan only when the creator says so --


class TrackedLink(models.Model):
    """A link of an issue's email, once per address, rewritten to /l/<signed id> (track_clicks)."""

    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="tracked_links")
    url = models.TextField()
    clicks = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issue", "url"], name="trackedlink_unique_url")]

    def __str__(self):
        return self.url


class LinkClick(models.Model):
    """One click by one recipient (engagement_per_subscriber only). The delivery is named by id:
    the ledger carries no constraints, and an erased fan's ledger row takes the name with it."""

    link = models.ForeignKey(TrackedLink, on_delete=models.CASCADE, related_name="recipient_clicks")
    delivery_id = models.BigIntegerField(db_index=True)
    at = models.DateTimeField(auto_now_add=True)


class IssueEngagement(models.Model):
    """An issue's open count (track_opens): a rough figure, mail apps load images on their own."""

    issue = models.OneToOneField(Issue, on_delete=models.CASCADE, primary_key=True, related_name="engagement")
    opens = models.PositiveIntegerField(default=0)


class DeliveryOpen(models.Model):
    """The first time one recipient's copy was opened (engagement_per_subscriber only)."""

    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="+")
    delivery_id = models.BigIntegerField(unique=True)
    at = models.DateTimeField(auto_now_add=True)
