"""Starting a send: the checks, renditions rendered once per audience, and the snapshot of the
audience in one INSERT ... SELECT; scheduling. Then the chains of batches are kicked off."""

import logging

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from newsletters import rendering, selectors
from newsletters.models import Issue

from . import chains, engagement
from .mime import shared_headers
from .models import Delivery, Rendition

log = logging.getLogger(__name__)
S = Delivery.Status
WEB = "web"


class IssueNotReady(Exception):
    """The issue cannot be sent as it is; `problems` says why, in words for the creator."""

    def __init__(self, problems):
        super().__init__(" ".join(problems))
        self.problems = problems


class SendFailed(Exception):
    pass


def audience_variants(issue):
    return ["paid"] if issue.audience == Issue.Audience.PAID else ["free", "paid"]


def render_renditions(issue):
    """Render the issue once per audience and store the result for every worker to use."""
    headers = shared_headers(issue)
    for variant in audience_variants(issue):
        html, text = engagement.track(issue, *rendering.render_issue(issue, variant))  # clicks, opens
        Rendition.objects.update_or_create(
            issue=issue, variant=variant, defaults={"headers": headers, "html": html, "text": text}
        )
    # The web version, frozen with the emails: what the archive shows is what was sent.
    Rendition.objects.update_or_create(
        issue=issue, variant=WEB, defaults={"headers": "", "html": rendering.render_web_body(issue), "text": ""}
    )


def snapshot(issue):
    """One Delivery per recipient, in one set-based statement; returns how many were written.

    The recipients are the audience selector's rows (subscribers.selectors.audience), compiled
    into the INSERT ... SELECT, so the snapshot and every count of the audience agree. Paid and
    comped members both get the paid rendition."""
    audience = selectors.issue_audience(issue).order_by().values("subscriber_id", "tier")
    select, params = audience.query.sql_with_params()
    sql = f"""
        INSERT INTO {Delivery._meta.db_table}
            (issue_id, subscriber_id, variant, status, attempts, claimed_by, message_id, error)
        SELECT %s, a.subscriber_id, CASE WHEN a.tier = 'free' THEN 'free' ELSE 'paid' END, %s, 0, '', '', ''
        FROM ({select}) a
        ON CONFLICT DO NOTHING
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [issue.pk, S.PENDING, *params])
        return cursor.rowcount


def start_send(issue_id):
    """Freeze the audience and start sending. Safe to call twice: the second call does nothing.

    Returns the number of recipients. Raises IssueNotReady with the problems to fix.
    """
    with transaction.atomic():
        issue = Issue.objects.select_for_update().select_related("newsletter").get(pk=issue_id)
        if issue.status in (Issue.Status.SENDING, Issue.Status.SENT, Issue.Status.FAILED):
            return issue.deliveries.count()
        problems = rendering.issue_problems(issue)
        if problems:
            raise IssueNotReady(problems)
        render_renditions(issue)
        count = snapshot(issue)
        issue.status = Issue.Status.SENDING
        issue.send_started_at = timezone.now()
        issue.save(update_fields=["status", "send_started_at", "updated_at"])
    log.info("issue %s: sending to %s recipients", issue_id, count)
    transaction.on_commit(lambda: chains.kick(issue_id, settings.SEND_CHAINS))
    return count


def schedule_send(issue_id, when):
    """Have beat start the send at `when`; checks now what would stop it then."""
    with transaction.atomic():
        issue = Issue.objects.select_for_update().select_related("newsletter").get(pk=issue_id)
        if issue.status not in (Issue.Status.DRAFT, Issue.Status.SCHEDULED):
            raise IssueNotReady([f"The issue is already {issue.get_status_display().lower()}."])
        problems = rendering.issue_problems(issue)
        if problems:
            raise IssueNotReady(problems)
        issue.status, issue.scheduled_at = Issue.Status.SCHEDULED, when
        issue.save(update_fields=["status", "scheduled_at", "updated_at"])


def start_due_scheduled(now=None):
    """Start every scheduled issue whose time has come; returns their ids."""
    now = now or timezone.now()
    started = []
    for issue_id in Issue.objects.filter(status=Issue.Status.SCHEDULED, scheduled_at__lte=now).values_list(
        "id", flat=True
    ):
        try:
            start_send(issue_id)
            started.append(issue_id)
        except IssueNotReady as error:
            log.error("scheduled issue %s could not start: %s", issue_id, error)
            Issue.objects.filter(pk=issue_id, status=Issue.Status.SCHEDULED).update(status=Issue.Status.FAILED)
    return started
