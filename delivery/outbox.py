"""A mail backend that keeps every message in the database for the browser to show."""

from django.core.mail.backends.base import BaseEmailBackend

# Every message built for a newsletter names it here, so its creator can find it.
NEWSLETTER_HEADER = "X-Newsletter"


def _html_alternative(message):
    for content, mimetype in getattr(message, "alternatives", []) or []:
        if mimetype == "text/html":
            return content
    return ""


def newsletter_ids(slugs):
    """The newsletter each X-Newsletter slug names now, by id: what a kept message is filed under."""
    from newsletters.models import Newsletter

    wanted = {slug for slug in slugs if slug}
    return dict(Newsletter.objects.filter(slug__in=wanted).values_list("slug", "id")) if wanted else {}


class OutboxBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        from .models import OutboxMessage

        messages = [message for message in email_messages if message.recipients()]
        ids = newsletter_ids(message.extra_headers.get(NEWSLETTER_HEADER, "")[:60] for message in messages)
        mimes = [message.message() for message in messages]
        for message, mime in zip(messages, mimes, strict=True):
            message.provider_id = str(mime["Message-ID"] or "")[:300]
        rows = [
            OutboxMessage(
                mailer=self.alias or "",
                newsletter_id=ids.get(message.extra_headers.get(NEWSLETTER_HEADER, "")[:60]),
                newsletter_slug=message.extra_headers.get(NEWSLETTER_HEADER, "")[:60],
                from_email=message.from_email,
                to="\n".join(message.recipients()),
                subject=message.subject,
                text_body=message.body,
                html_body=_html_alternative(message),
                raw=mime.as_bytes(),
            )
            for message, mime in zip(messages, mimes, strict=True)
        ]
        OutboxMessage.objects.bulk_create(rows)
        return len(rows)
