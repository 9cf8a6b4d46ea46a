"""Outgoing webhooks: where a creator wants events posted, and the outbox of what is owed to them."""

import base64
import secrets

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class EventType(models.TextChoices):
    SUBSCRIBER_CREATED = "subscriber.created", _("Subscriber created (signed up, invited or imported)")
    SUBSCRIBER_CONFIRMED = "subscriber.confirmed", _("Subscriber confirmed")
    SUBSCRIBER_UNSUBSCRIBED = "subscriber.unsubscribed", _("Subscriber unsubscribed")
    SUBSCRIBER_BOUNCED = "subscriber.bounced", _("Subscriber bounced or complained")
    ISSUE_SENT = "issue.sent", _("Issue sent")
    MEMBER_PAID = "member.paid", _("Member paid")
    MEMBER_CANCELLED = "member.cancelled", _("Member cancelled")


def new_secret():
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Endpoint(models.Model):
    """A URL of the creator's that receives the events it chose, signed with its own secret."""

    newsletter = models.ForeignKey(
        "newsletters.Newsletter", on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=500, help_text=_("Where events are posted (https)."))
    description = models.CharField(max_length=200, blank=True)
    secret = models.CharField(max_length=100, default=new_secret, editable=False)
    event_types = models.JSONField(default=list, help_text=_("The events this endpoint receives."))
    active = models.BooleanField(default=True, help_text=_("Paused: no new events; those owed wait."))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("newsletter", "id")
        verbose_name = _("webhook endpoint")

    def __str__(self):
        return self.url

    def clean(self):
        from .client import UnsafeURL, check_url

        unknown = set(self.event_types or []) - set(EventType.values)
        if unknown:
            raise ValidationError({"event_types": _("Unknown event types: %s") % ", ".join(sorted(unknown))})
        if self.url:
            try:
                check_url(self.url, resolve_errors=False)
            except UnsafeURL as error:
                raise ValidationError({"url": str(error)})


class Message(models.Model):
    """One event owed to one endpoint: the outbox row, written in the transaction of the change.

    `webhook_id` is the same on every attempt and every "send again" (receivers dedupe by it).
    The endpoint has no foreign-key constraint: a signup must not fail because an endpoint was
    deleted at that moment; the dispatcher takes only rows whose endpoint exists and is active.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed")

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="messages", db_constraint=False)
    webhook_id = models.CharField(max_length=100)
    event_type = models.CharField(max_length=40, choices=EventType.choices)
    payload = models.JSONField()
    subscriber_id = models.BigIntegerField(null=True, blank=True, db_index=True)  # for erasure
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    retry_until = models.DateTimeField(null=True, blank=True)  # set at the first failure
    claim = models.CharField(max_length=32, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    sending_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = (models.UniqueConstraint(fields=["endpoint", "webhook_id"], name="webhookmessage_unique_id"),)
        indexes = (models.Index(fields=["status", "next_attempt_at"], name="webhookmessage_due_idx"),)
        ordering = ("-created_at", "-id")
        verbose_name = _("webhook message")

    def __str__(self):
        return f"{self.event_type} {self.webhook_id}"


class Attempt(models.Model):
    """One POST of a message: the delivery log."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response = models.CharField(max_length=500, blank=True, help_text=_("The start of the answer."))
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("at", "id")
        verbose_name = _("webhook attempt")

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error[:40]}"
