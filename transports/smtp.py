"""SMTP with a few persistent connections per worker process, STARTTLS or implicit TLS.

A group of messages (`in_flight`, one per connection) goes out side by side: each step of
every conversation is written before any reply is read, so the relay works on all of them at
once and the engine writes one hand-over per group, not per message.
"""

import logging
import re
import smtplib
import socket
import ssl
import time

from django.conf import settings

from . import FAILED, HALTED, RETRY, SENT, THROTTLED, UNKNOWN, Result, Transport, dkim

log = logging.getLogger(__name__)
LEADING_DOT = re.compile(rb"(?m)^\.")
UNSAFE_ADDRESS = re.compile(r"[\x00-\x20<>\x7f]")
IDLE_CHECK_SECONDS = 30
# Replies that speak for the relay as a whole, not for one recipient: service not available,
# local error (a relay's rate or quota), TLS or authentication temporarily unavailable.
THROTTLE_CODES = {421, 451, 454}
# 530 authentication required, 534 a stronger mechanism wanted, 535 the login refused, 538 encryption required first.
AUTH_CODES = {530, 534, 535, 538}
NO_SMTPUTF8 = "the address has non-ASCII characters before the @ and the relay does not offer SMTPUTF8"


def idna_address(address):
    """`address` with its domain in IDNA ASCII (punycode), the local part as it is; raises UnicodeError."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    return f"{local}@{dkim.ascii_domain(domain)}"


def needs_smtputf8(*addresses):
    """True when a local part is still not ASCII (after idna_address): only SMTPUTF8 (RFC 6531) carries it."""
    return not all(address.isascii() for address in addresses)


class RelayLacksSMTPUTF8(Exception):
    """Raised before any command goes out: the message needs SMTPUTF8 and this relay does not offer it."""


def _data(raw):
    """The message as DATA carries it, end mark included; made before MAIL FROM so a bad one sends nothing."""
    body = raw
    if body.startswith(b".") or b"\n." in body:  # prepared messages never need this
        body = LEADING_DOT.sub(b"..", body)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


class _Relay:
    """One persistent connection of a transport's pool."""

    def __init__(self, transport):
        self.transport = transport
        self.connection = None
        self.last_used = 0.0

    def open(self):
        if self.connection is not None and time.monotonic() - self.last_used > IDLE_CHECK_SECONDS:
            try:
                if self.connection.noop()[0] != 250:
                    self.close()
            except (smtplib.SMTPException, OSError):
                self.close()
        if self.connection is None:
            self.connection = self.transport._connect()
        self.last_used = time.monotonic()
        return self.connection

    def close(self):
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self.connection = None


class SMTPTransport(Transport):
    name = "smtp"

    def __init__(self, *, host, port, username="", password="", tls="none", timeout=30.0, connections=8):
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.tls, self.timeout = tls, timeout
        # One message on the wire per connection: a killed worker leaves at most this many unknown.
        self.in_flight = max(1, int(connections))
        # Messages per reservation from the rate bucket: whole groups, about 20 messages.
        self.window = settings.SEND_WINDOW or -(-20 // self.in_flight) * self.in_flight
        self.relays = [_Relay(self) for _ in range(self.in_flight)]
        self.signer = dkim.signer()  # None without DKIM settings; the key is parsed once here

    def _connect(self):
        context = ssl.create_default_context() if self.tls in ("ssl", "starttls") else None
        if self.tls == "ssl":
            connection = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.tls == "starttls":
                connection.starttls(context=context)
        connection.ehlo()
        if self.username:
            connection.login(self.username, self.password)
        return connection

    def close(self):
        for relay in self.relays:
            relay.close()

    def send(self, messages):
        results = []
        for start in range(0, len(messages), self.in_flight):
            group = messages[start:start + self.in_flight]
            # Each conversation is a generator that yields where it waits for the relay: every
            # conversation's commands are written before any of their replies is read.
            conversations = [self._guarded(relay, message) for relay, message in zip(self.relays, group)]
            outcome = [None] * len(group)
            waiting = list(enumerate(conversations))
            while waiting:
                still = []
                for index, conversation in waiting:
                    try:
                        next(conversation)
                        still.append((index, conversation))
                    except StopIteration as done:
                        outcome[index] = done.value
                waiting = still
            results.extend(outcome)
        return results

    def _guarded(self, relay, message):
        """One message, whatever it holds: an error it causes fails it alone, never its group."""
        try:
            return (yield from self._hand_over(relay, message))
        except Exception as error:
            log.exception("SMTP: delivery %s could not be prepared", message.delivery_id)
            relay.close()  # the conversation may have stopped halfway; the next message reconnects
            return Result(message.delivery_id, FAILED, error=f"could not be sent: {type(error).__name__}: {error}")

    def _refused(self, relay, message, code, reply, *, recipient_only=False):
        text = f"{code} {reply.decode(errors='replace') if isinstance(reply, bytes) else reply}"
        if code == 421:
            relay.close()  # the server is closing this connection
        try:
            if relay.connection is not None:
                relay.connection.rset()
        except (smtplib.SMTPException, OSError):
            relay.close()
        if code in AUTH_CODES and not recipient_only:
            return Result(message.delivery_id, HALTED, error=f"the relay wants a login it did not get: {text}")
        if 400 <= code < 500:
            # At RCPT TO a 4xx speaks for that one recipient (greylisting, a full mailbox).
            relay_wide = code == 421 or (code in THROTTLE_CODES and not recipient_only)
            return Result(message.delivery_id, THROTTLED if relay_wide else RETRY, error=text)
        return Result(message.delivery_id, FAILED, error=text)

    def _envelope(self, relay, sender, recipient):
        """MAIL FROM, RCPT TO and DATA (a generator): (code, reply, stage 0-2) of the first refusal,
        or (354, b"", None).

        With PIPELINING (RFC 2920) the three commands go out in one write and their replies are
        read together: two round trips per message instead of four.
        """
        connection = relay.open()
        mail_from = f"MAIL FROM:<{sender}>"
        if needs_smtputf8(sender, recipient):
            if not connection.has_extn("smtputf8"):
                raise RelayLacksSMTPUTF8()
            mail_from += " SMTPUTF8"
        # Sent as UTF-8 bytes: smtplib would encode a str as ASCII, and SMTPUTF8 addresses are not.
        commands = [(command + "\r\n").encode() for command in (mail_from, f"RCPT TO:<{recipient}>", "DATA")]
        if connection.does_esmtp and connection.has_extn("pipelining"):
            connection.send(b"".join(commands))
            yield
            replies = [connection.getreply() for _ in commands]
        else:
            replies = []
            for command in commands:
                connection.send(command)
                yield
                replies.append(connection.getreply())
                if replies[-1][0] >= 400:
                    break
        for stage, ((code, reply), expected) in enumerate(zip(replies, ((250,), (250, 251), (354,)))):
            if code not in expected:
                if replies[-1][0] == 354:
                    connection.send(".\r\n")  # a server that opened DATA anyway gets an empty, aborted message
                    connection.getreply()
                return code, reply, stage
        return 354, b"", None

    def _hand_over(self, relay, message):
        if UNSAFE_ADDRESS.search(message.sender) or UNSAFE_ADDRESS.search(message.recipient):
            return Result(message.delivery_id, FAILED, error="the address holds characters SMTP cannot carry")
        try:
            sender, recipient = idna_address(message.sender), idna_address(message.recipient)
        except UnicodeError as error:
            error = f"the domain of the address cannot be written in IDNA (punycode): {error}"
            return Result(message.delivery_id, FAILED, error=error)
        # DKIM (transports/dkim.py): signed here, just before the bytes go to the relay.
        data = _data(self.signer.sign(message.raw) if self.signer else message.raw)
        # Until the message body goes out nothing has been sent, so any failure is safe to retry.
        try:
            try:
                code, reply, stage = yield from self._envelope(relay, sender, recipient)
            except smtplib.SMTPServerDisconnected:
                relay.close()  # a stale reused connection: one fresh try
                code, reply, stage = yield from self._envelope(relay, sender, recipient)
            if code != 354:
                return self._refused(relay, message, code, reply, recipient_only=stage == 1)
            connection = relay.connection
        except RelayLacksSMTPUTF8:
            return Result(message.delivery_id, FAILED, error=NO_SMTPUTF8)
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError) as error:
            # A wrong password, or a login the relay does not offer: every message would fail alike.
            relay.close()
            return Result(message.delivery_id, HALTED, error=f"the relay refused the login: {error}")
        except (smtplib.SMTPException, OSError, socket.timeout) as error:
            # The relay cannot be reached or dropped us before DATA: a pause for the whole send.
            relay.close()
            return Result(message.delivery_id, THROTTLED, error=f"{type(error).__name__}: {error}")

        # From here the message is on the wire: a broken connection leaves its fate unknown.
        try:
            connection.send(data)
            yield
            code, reply = connection.getreply()
        except (smtplib.SMTPException, OSError, socket.timeout) as error:
            relay.close()
            return Result(message.delivery_id, UNKNOWN, error=f"connection lost after the message was sent: {error}")
        if code != 250:
            return self._refused(relay, message, code, reply)
        return Result(message.delivery_id, SENT, provider_id=message.message_id)
