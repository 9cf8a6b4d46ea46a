"""SMTP with a persistent connection per worker process, STARTTLS or implicit TLS."""

import logging
import re
import smtplib
import socket
import ssl
import time

from django.conf import settings

from . import FAILED, RETRY, SENT, THROTTLED, UNKNOWN, Result, Transport

log = logging.getLogger(__name__)
LEADING_DOT = re.compile(rb"(?m)^\.")
UNSAFE_ADDRESS = re.compile(r"[\x00-\x20<>\x7f]")
IDLE_CHECK_SECONDS = 30
# Replies that speak for the relay as a whole, not for one recipient: service not available,
# local error (a relay's rate or quota), TLS or authentication temporarily unavailable.
THROTTLE_CODES = {421, 451, 454}


class SMTPTransport(Transport):
    name = "smtp"

    def __init__(self, *, host, port, username="", password="", tls="none", timeout=30.0):
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.tls, self.timeout = tls, timeout
        self.window = settings.SEND_WINDOW or 20
        self.connection = None
        self.last_used = 0.0

    def _connect(self):
        context = ssl.create_default_context()
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

    def _connection(self):
        if self.connection is not None and time.monotonic() - self.last_used > IDLE_CHECK_SECONDS:
            try:
                if self.connection.noop()[0] != 250:
                    self.close()
            except (smtplib.SMTPException, OSError):
                self.close()
        if self.connection is None:
            self.connection = self._connect()
        self.last_used = time.monotonic()
        return self.connection

    def close(self):
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self.connection = None

    def send(self, messages):
        return [self._send_one(message) for message in messages]

    def _refused(self, message, code, reply):
        text = f"{code} {reply.decode(errors='replace') if isinstance(reply, bytes) else reply}"
        if code == 421:
            self.close()  # the server is closing this connection
        if 400 <= code < 500:
            try:
                if self.connection is not None:
                    self.connection.rset()
            except (smtplib.SMTPException, OSError):
                self.close()
            return Result(message.delivery_id, THROTTLED if code in THROTTLE_CODES else RETRY, error=text)
        try:
            if self.connection is not None:
                self.connection.rset()
        except (smtplib.SMTPException, OSError):
            self.close()
        return Result(message.delivery_id, FAILED, error=text)

    def _envelope(self, message):
        """MAIL FROM, RCPT TO and DATA; (code, reply) of the first refusal, or (354, b"") to go on.

        With PIPELINING (RFC 2920) the three commands go out in one write and their replies are
        read together: two round trips per message instead of four.
        """
        connection = self._connection()
        commands = [f"MAIL FROM:<{message.sender}>", f"RCPT TO:<{message.recipient}>", "DATA"]
        if connection.does_esmtp and connection.has_extn("pipelining"):
            connection.send("".join(command + "\r\n" for command in commands))
            replies = [connection.getreply() for _ in commands]
        else:
            replies = []
            for command in commands:
                connection.send(command + "\r\n")
                replies.append(connection.getreply())
                if replies[-1][0] >= 400:
                    break
        for (code, reply), expected in zip(replies, ((250,), (250, 251), (354,))):
            if code not in expected:
                if replies[-1][0] == 354:
                    connection.send(".\r\n")  # a server that opened DATA anyway gets an empty, aborted message
                    connection.getreply()
                return code, reply
        return 354, b""

    def _send_one(self, message):
        if UNSAFE_ADDRESS.search(message.sender) or UNSAFE_ADDRESS.search(message.recipient):
            return Result(message.delivery_id, FAILED, error="the address holds characters SMTP cannot carry")
        # Until the message body goes out nothing has been sent, so any failure is safe to retry.
        try:
            try:
                code, reply = self._envelope(message)
            except smtplib.SMTPServerDisconnected:
                self.close()  # a stale reused connection: one fresh try
                code, reply = self._envelope(message)
            if code != 354:
                return self._refused(message, code, reply)
            connection = self.connection
        except (smtplib.SMTPException, OSError, socket.timeout) as error:
            # The relay cannot be reached or dropped us before DATA: a pause for the whole send.
            self.close()
            return Result(message.delivery_id, THROTTLED, error=f"{type(error).__name__}: {error}")

        # From here the message is on the wire: a broken connection leaves its fate unknown.
        body = message.raw
        if body.startswith(b".") or b"\n." in body:  # prepared messages never need this
            body = LEADING_DOT.sub(b"..", body)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        try:
            connection.send(body + b".\r\n")
            code, reply = connection.getreply()
        except (smtplib.SMTPException, OSError, socket.timeout) as error:
            self.close()
            return Result(message.delivery_id, UNKNOWN, error=f"connection lost after the message was sent: {error}")
        if code != 250:
            return self._refused(message, code, reply)
        return Result(message.delivery_id, SENT, provider_id=message.message_id)
