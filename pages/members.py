"""Members log in on the site with a one-time code by email (django-allauth), never a password.

Billing makes members' logins (billing.members.member_user_ensure), so nobody signs up here.
Creators are staff and log in at /admin/ with their password: an emailed code must not open the
admin, so a creator's address is answered like an unknown one (the same page, and no email).
The code email is rendered in the request's language and sent by a worker of the transactional
queue, as confirmations are; when the broker does not answer it is sent from the request, since a
member waiting for a code has no other way in.
"""

import logging
from typing import ClassVar

from allauth.account import app_settings
from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.forms import RequestLoginCodeForm
from allauth.account.utils import filter_users_by_email
from celery import shared_task
from django.core.mail import EmailMultiAlternatives
from django.utils.translation import gettext_lazy as _
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from ownedaudience import links
from subscribers.addresses import normalize_email

log = logging.getLogger(__name__)

RETRY_OUTCOMES = ("retry", "throttled")  # the transports' "not now"; "unknown" may have gone out already


def code_minutes():
    return app_settings.LOGIN_BY_CODE_TIMEOUT // 60


class MemberLoginCodeForm(RequestLoginCodeForm):
    def clean_email(self):
        """One spelling per address, as subscribers are stored; a creator gets no code (see above).

        allauth counts requests in the cache (Redis): when it does not answer, the limits are skipped,
        as the signup's are, so that a member still gets in (their code then goes from the request)."""
        email = self.cleaned_data["email"] = normalize_email(self.cleaned_data["email"]).lower()
        try:
            super().clean_email()
        except (RedisError, OSError) as error:
            log.warning("login code limits skipped, the cache did not answer: %s", error)
            self._user = (filter_users_by_email(email, is_active=True, prefer_verified=True) or [None])[0]
        if self._user is not None and self._user.is_staff:
            self._user = None
        return email


class MemberAccountAdapter(DefaultAccountAdapter):
    error_messages: ClassVar[dict] = {
        **DefaultAccountAdapter.error_messages,
        "incorrect_code": _("That code is not right. Check the email and try again."),
        # Said both when a code took too many wrong tries and when too many codes were asked for.
        "too_many_login_attempts": _("Too many attempts. Wait a few minutes, then ask for a new code."),
    }

    def is_open_for_signup(self, request):
        return False

    def send_mail(self, template_prefix, email, context):
        context = {"email": email, "site": links.site_host(), "minutes": code_minutes(), **context}
        message = self.render_mail(template_prefix, email, context)
        fields = {
            "subject": message.subject, "body": message.body, "from_email": message.from_email,
            "to": message.to,
            "html": {mimetype: content for content, mimetype in message.alternatives}.get("text/html", ""),
        }
        try:
            # A code is dead after its lifetime: a worker that gets to it later drops it.
            send_login_email.apply_async([fields], retry=False, expires=app_settings.LOGIN_BY_CODE_TIMEOUT)
        except (OperationalError, OSError) as error:
            log.warning("login email sent from the request, the broker did not answer: %s", error)
            try:
                deliver(fields)
            except Exception:  # the page must read the same as for an unknown address: no error page
                log.exception("login email to %s could not be sent", message.to)


def deliver(fields):
    message = EmailMultiAlternatives(fields["subject"], fields["body"], fields["from_email"], fields["to"])
    if fields["html"]:
        message.attach_alternative(fields["html"], "text/html")
    message.send(using="transactional")


@shared_task(bind=True, ignore_result=True, max_retries=3, default_retry_delay=10)
def send_login_email(self, fields):
    """Through the transactional mailer; a relay's "try later" is tried again while the code still lives."""
    try:
        deliver(fields)
    except Exception as error:
        if getattr(error, "outcome", None) in RETRY_OUTCOMES:
            raise self.retry(exc=error) from error
        raise
