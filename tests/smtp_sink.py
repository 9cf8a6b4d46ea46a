"""An aiosmtpd sink on loopback that keeps every message and can be told to refuse for a while."""

import email
import email.policy
import threading

from aiosmtpd.controller import Controller

from .servers import free_port


class Received:
    def __init__(self, envelope):
        self.mail_from = envelope.mail_from
        self.rcpt_tos = list(envelope.rcpt_tos)
        self.raw = envelope.original_content or envelope.content
        self.message = email.message_from_bytes(self.raw, policy=email.policy.default)


class SinkHandler:
    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()
        self.refuse_with = None  # e.g. "421 4.7.0 Try again later"
        self.refusals = 0

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.refuse_with:
                self.refusals += 1
                return self.refuse_with
            self.messages.append(Received(envelope))
        return "250 2.0.0 Ok: queued"


class SmtpSink:
    def __init__(self):
        self.handler = SinkHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def url(self):
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self):
        with self.handler.lock:
            return list(self.handler.messages)

    def to(self, address):
        """Messages whose envelope went to `address`."""
        return [m for m in self.messages if address.lower() in (r.lower() for r in m.rcpt_tos)]

    def refuse(self, reply):
        self.handler.refuse_with = reply

    def accept(self):
        self.handler.refuse_with = None

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()
