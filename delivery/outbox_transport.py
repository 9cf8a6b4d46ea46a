"""The dev outbox as a bulk transport: every message is kept in the database for the browser."""

import email
import email.policy

from django.conf import settings

from transports import SENT, Result, Transport

from .outbox import NEWSLETTER_HEADER, newsletter_ids


def _part(parsed, subtype):
    part = parsed.get_body(preferencelist=(subtype,))
    return part.get_content() if part is not None else ""


class OutboxTransport(Transport):
    name = "outbox"

    def __init__(self):
        self.window = settings.SEND_WINDOW or 50
        self.in_flight = self.window  # nothing is on a wire: a crash cannot cut a window short

    def send(self, messages):
        from .models import OutboxMessage

        parsed_messages = [email.message_from_bytes(m.raw, policy=email.policy.default) for m in messages]
        slugs = [str(parsed.get(NEWSLETTER_HEADER, ""))[:60] for parsed in parsed_messages]
        ids = newsletter_ids(slugs)
        rows = []
        for message, parsed, slug in zip(messages, parsed_messages, slugs, strict=True):
            rows.append(OutboxMessage(
                mailer="bulk",
                newsletter_id=ids.get(slug),
                newsletter_slug=slug,
                from_email=str(parsed["From"]),
                to=message.recipient,
                subject=str(parsed["Subject"]),
                text_body=_part(parsed, "plain"),
                html_body=_part(parsed, "html"),
                raw=message.raw,
            ))
        OutboxMessage.objects.bulk_create(rows)
        return [Result(message.delivery_id, SENT, provider_id=message.message_id) for message in messages]
