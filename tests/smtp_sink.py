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
        self.smtputf8 = envelope.smtp_utf8  # MAIL FROM carried the SMTPUTF8 parameter
        self.raw = envelope.original_content or envelope.content
        self.message = email.message_from_bytes(self.raw, policy=email.policy.default)


class SinkHandler:
    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()
        self.refuse_with = None  # e.g. "421 4.7.0 Try again later"
        self.refusals = 0
        self.refused_recipients = {}  # address -> reply at RCPT TO
        self.pipelining = True
        self.slow_seconds = 0.0  # how long each DATA waits before its answer: a slow relay
        self.data_replies = {}  # address -> reply at the end of DATA (the message is not kept)
        self.hang_up_after_data = set()  # addresses whose DATA gets no answer: the connection drops
        self.sessions = set()  # the client connections seen, by (host, port)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd reads commands one after another anyway; saying so lets clients pipeline (RFC 2920).
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.sessions.add(session.peer)
        if address.lower() in self.refused_recipients:
            return self.refused_recipients[address.lower()]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.slow_seconds:
            import asyncio

            await asyncio.sleep(self.slow_seconds)
        recipients = {address.lower() for address in envelope.rcpt_tos}
        if recipients & self.hang_up_after_data:
            server.transport.close()
            return "421 4.3.0 gone"  # never reaches the client: the connection is closed
        for address in recipients:
            if address in self.data_replies:
                return self.data_replies[address]
        with self.lock:
            if self.refuse_with:
                self.refusals += 1
                return self.refuse_with
            self.messages.append(Received(envelope))
        return "250 2.0.0 Ok: queued"


def _authenticator(credentials):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def check(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(), auth_data.password.decode()) == credentials
        return AuthResult(success=ok, handled=False)  # a refusal answers 535, as relays do

    return check


class SmtpSink:
    """tls=None, "starttls" (required before MAIL) or "ssl" (implicit TLS); credentials=(user, password);
    smtputf8=False for a relay that does not offer SMTPUTF8 (aiosmtpd's Controller offers it by default)."""

    def __init__(self, tls=None, certificate=None, credentials=None, smtputf8=True):
        self.handler = SinkHandler()
        self.port = free_port()
        options = {"enable_SMTPUTF8": smtputf8}
        if tls:
            import ssl

            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*certificate)
            if tls == "starttls":
                options.update(tls_context=context, require_starttls=True)
            else:
                # aiosmtpd only counts STARTTLS as TLS when it decides whether to offer AUTH.
                options.update(ssl_context=context, auth_require_tls=False)
        if credentials:
            options.update(authenticator=_authenticator(credentials), auth_required=True)
            if not tls:  # a relay on loopback that takes a login in the clear, as a test can
                options.update(auth_require_tls=False)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **options)

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
