"""What the engine tells a creator by email: a send that stopped itself, and why."""

from django.conf import settings
from django.core.mail import EmailMessage
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from newsletters.models import Issue
from ownedaudience import links


def send_pause_notice(issue_id):
    """One email to the owners who have an address, in the newsletter's language; None if none do."""
    issue = Issue.objects.select_related("newsletter").get(pk=issue_id)
    if issue.status != Issue.Status.PAUSED:
        return None  # resumed before the notice went out
    owners = [user.email for user in issue.newsletter.owners.all() if user.email]
    if not owners:
        return None
    with translation.override(issue.newsletter.language):
        subject = _("Sending paused: %(title)s") % {"title": issue.title}
        body = "\n\n".join([
            _("The send of “%(title)s” (%(newsletter)s) stopped itself.") % {
                "title": issue.title, "newsletter": issue.newsletter.name,
            },
            _("Why: %(reason)s") % {"reason": issue.paused_reason},
            _("Nobody missed out and nobody will get it twice: everyone still waiting stays in line. "
              "Fix the cause, then press “Resume sending” on the issue's page:"),
            links.absolute(reverse("admin:newsletters_issue_change", args=[issue.pk])),
        ])
    message = EmailMessage(subject.replace("\n", " "), body, settings.DEFAULT_FROM_EMAIL, owners)
    message.send(using="transactional")
    return owners
