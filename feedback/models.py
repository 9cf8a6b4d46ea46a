"""What mail providers told us about the mail we sent: bounces, complaints, deliveries, opens, clicks."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class FeedbackEvent(models.Model):
    """One SNS message from SES, kept once by its SNS id, so a replayed message changes nothing.

    Other sources keep their events once the same way, under a key prefixed by where they came
    from: "postmark:<ID>" and "mailgun:<id>" (feedback/relay.py), "imap:<Message-ID>" for a message
    read from the bounce mailbox (feedback/mailbox.py).

    `delivery_id` names the ledger row the event is about, as a plain integer like the ledger's own
    references: the ledger is written a million rows at a time and must not carry checks for us.
    It is empty for mail outside the ledger (transactional emails) and for SNS's own messages.
    """

    class Kind(models.TextChoices):
        DELIVERY = "delivery", _("Delivered")
        BOUNCE = "bounce", _("Bounced")
        COMPLAINT = "complaint", _("Complaint")
        OPEN = "open", _("Opened")
        CLICK = "click", _("Clicked")
        REJECT = "reject", _("Rejected by SES")
        DELIVERY_DELAY = "delivery_delay", _("Delivery delayed")
        SEND = "send", _("Accepted by SES")
        RENDERING_FAILURE = "rendering_failure", _("Rendering failure")
        SUBSCRIPTION = "subscription", _("Subscription preferences")
        OTHER = "other", _("Other SES event")
        SNS_SUBSCRIBED = "sns_subscribed", _("SNS subscription confirmed")
        SNS_UNSUBSCRIBED = "sns_unsubscribed", _("SNS subscription ended")

    sns_message_id = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The bounce type (Permanent, Transient, Undetermined) or the complaint's feedback type.
    subtype = models.CharField(max_length=40, blank=True)
    delivery_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    message_id = models.CharField(max_length=300, blank=True, help_text=_("The provider's message id."))
    # The first recipient the event names (each message the ledger sends has exactly one).
    recipient = models.CharField(max_length=254, blank=True)
    detail = models.JSONField(default=dict)
    at = models.DateTimeField(help_text=_("When the provider says it happened."))
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-at",)
        # Counting an address's transient bounces within the window.
        indexes = (models.Index(fields=["recipient", "kind", "at"], name="feedback_recipient_kind_at"),)

    def __str__(self):
        return f"{self.kind} {self.recipient or self.sns_message_id}"
