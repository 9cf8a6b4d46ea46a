"""The emails the audience side sends: confirmation, welcome, and a fan's own data.

Nothing a fan typed goes into them: the address is only the envelope recipient, and the
words are the installation's or the creator's. Each is built in the newsletter's language,
with a plain-text and an HTML part and the X-Newsletter header the dev outbox files it by.
"""

import json
import re
from email.utils import formataddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.defaultfilters import linebreaks_filter, urlize
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

from ownedaudience import links

from .models import OwedEmail, Subscription

# Named in delivery.outbox as well; the dev outbox shows a creator the mail carrying their slug.
NEWSLETTER_HEADER = "X-Newsletter"

# The models refuse line breaks in these fields, but a row saved before that (or written straight to
# the database) must still give a message that builds, and no header of its own.
HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")


def unsubscribe_url(subscription_id):
    return links.fan("unsubscribe", subscription_id)


def preferences_url(subscription_id):
    return links.fan("preferences", subscription_id)


def confirm_url(subscription_id):
    return links.fan("confirm", subscription_id)


def one_line(value):
    """A value for an email header, whatever is stored: control characters (line breaks first) read
    as a space, runs of spaces as one. Every header built from a creator's fields goes through it."""
    return " ".join(HEADER_UNSAFE.sub(" ", value or "").split())


def sender_of(newsletter):
    name = one_line(newsletter.sender_name) or one_line(newsletter.name)
    return formataddr((name, one_line(newsletter.sender_email) or settings.DEFAULT_FROM_EMAIL))


def _message(subscription, *, subject, template, context, headers=None):
    newsletter = subscription.newsletter
    context = {"newsletter": newsletter, "site_url": settings.SITE_URL, **context}
    text = render_to_string(f"subscribers/email/{template}.txt", context)
    html = render_to_string(f"subscribers/email/{template}.html", context)
    reply_to = one_line(newsletter.reply_to)
    headers = {NEWSLETTER_HEADER: newsletter.slug, **(headers or {})}
    message = EmailMultiAlternatives(
        subject=one_line(subject),
        body=text,
        from_email=sender_of(newsletter),
        to=[subscription.subscriber.email],
        reply_to=[reply_to] if reply_to else None,
        headers={name: one_line(value) for name, value in headers.items()},
    )
    message.attach_alternative(html, "text/html")
    return message


def build_confirmation(subscription):
    return _message(
        subscription,
        subject=_("Confirm your subscription to %(name)s") % {"name": subscription.newsletter.name},
        template="confirmation",
        context={"confirm_url": confirm_url(subscription.id)},
        headers={"Auto-Submitted": "auto-generated"},
    )


def build_welcome(subscription):
    newsletter = subscription.newsletter
    unsubscribe = unsubscribe_url(subscription.id)
    body_html = mark_safe(linebreaks_filter(urlize(escape(newsletter.welcome_body), autoescape=True)))
    return _message(
        subscription,
        subject=newsletter.welcome_subject,
        template="welcome",
        context={
            "body_text": newsletter.welcome_body,
            "body_html": body_html,
            "unsubscribe_url": unsubscribe,
            "preferences_url": preferences_url(subscription.id),
        },
        # RFC 8058: mail providers show an Unsubscribe button that POSTs here.
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


def build_data_export(subscription):
    from .services import subscriber_data

    data = subscriber_data(subscription.subscriber)
    message = _message(
        subscription,
        subject=_("Your data at %(name)s") % {"name": subscription.newsletter.name},
        template="data_export",
        context={"preferences_url": preferences_url(subscription.id), "count": len(data["subscriptions"])},
        headers={"Auto-Submitted": "auto-generated"},
    )
    message.attach("my-data.json", json.dumps(data, indent=2, ensure_ascii=False), "application/json")
    return message


def build_owed_email(owed):
    """The message an OwedEmail stands for, or None when it is no longer wanted."""
    subscription = owed.subscription
    with translation.override(subscription.newsletter.language):
        if owed.kind == OwedEmail.Kind.CONFIRMATION:
            if subscription.status != Subscription.Status.PENDING:
                return None  # confirmed (or gone) since it was owed
            return build_confirmation(subscription)
        if owed.kind == OwedEmail.Kind.WELCOME:
            newsletter = subscription.newsletter
            if subscription.status != Subscription.Status.ACTIVE or not newsletter.welcome_subject.strip():
                return None
            return build_welcome(subscription)
        if owed.kind == OwedEmail.Kind.DATA_EXPORT:
            return build_data_export(subscription)
    return None
