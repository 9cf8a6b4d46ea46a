"""A Django mail backend over the project's transports (MAILERS, e.g. transactional mail).

Transactional mail and the bulk engine then share one pipeline: the same transports, with the
same reading of what a relay or SES said. A message not accepted raises MailNotAccepted, whose
`outcome` is the transport's (retry, throttled, failed, unknown), so the caller can tell "try
again later" from "it may have gone out: never send it again".
"""

from email.utils import parseaddr

from django.core.mail.backends.base import BaseEmailBackend

from . import FAILED, HALTED, RETRY, SENT, THROTTLED, UNKNOWN, Outgoing, get_transport

# When one message's recipients got different answers, the one that decides what happens next.
_GRAVITY = [UNKNOWN, FAILED, HALTED, THROTTLED, RETRY]


class MailNotAccepted(OSError):
    def __init__(self, outcome, error, results):
        super().__init__(f"mail not accepted ({outcome}): {error}")
        self.outcome, self.results = outcome, results


class TransportEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        transport = get_transport()
        for message in email_messages:
            mime = message.message()
            raw = mime.as_bytes(policy=mime.policy.clone(linesep="\r\n"))
            sender = parseaddr(message.from_email)[1]
            results = transport.send(
                [Outgoing(0, sender, recipient, mime["Message-ID"], raw) for recipient in message.recipients()]
            )
            refused = [result for result in results if result.outcome != SENT]
            if refused:
                outcome = min((r.outcome for r in refused), key=_GRAVITY.index)
                # A one-off email has no send to stop: "not now, nothing went out", like throttling.
                outcome = THROTTLED if outcome == HALTED else outcome
                raise MailNotAccepted(outcome, "; ".join(r.error for r in refused), results)
            # The provider's id of what went out, for the caller to keep (as the bulk ledger does).
            message.provider_id = ",".join(result.provider_id for result in results)[:300]
        return len(email_messages)
