"""What the creator sees of a send: its deliveries counted by status."""

from django.db.models import Count

from .models import Delivery


def progress(issue_id):
    """Deliveries of an issue counted by status."""
    return {
        row["status"]: row["n"]
        for row in Delivery.objects.filter(issue_id=issue_id).values("status").annotate(n=Count("id"))
    }
