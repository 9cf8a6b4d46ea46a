"""A Django mail backend over the project's transports, for MAILERS (e.g. transactional mail via SES)."""

from email.utils import parseaddr

from django.core.mail.backends.base import BaseEmailBackend

from . import SENT, Outgoing, get_transport


class TransportEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        transport = get_transport()
        for message in email_messages:
            mime = message.message()
            raw = mime.as_bytes(linesep="\r\n")
            sender = parseaddr(message.from_email)[1]
            results = transport.send(
                [Outgoing(0, sender, recipient, mime["Message-ID"], raw) for recipient in message.recipients()]
            )
            failures = [result.error for result in results if result.outcome != SENT]
            if failures:
                raise OSError(f"mail not accepted: {'; '.join(failures)}")
        return len(email_messages)
