"""What the send engine tells the apps above it (outgoing webhooks), inside its own transaction."""

from django.dispatch import Signal

# issue_id=…, status="sent" | "failed", counts={delivery status: rows}: a send closed. It can
# close again after late truth reopened it; receivers key what they write by issue and status.
issue_finished = Signal()
# A send stopped itself (delivery.pausing): issue_id, reason.
issue_paused = Signal()
