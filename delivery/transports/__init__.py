"""Transports: one small interface in front of SES, SMTP, the dev outbox and a discarding sink.

A transport takes a window of prepared messages and says, for each, one of:
  sent     - the provider accepted it (with its message id),
  retry    - not accepted, nothing went out; try again later (throttling, 4xx, 5xx, timeouts
             before the message was handed over),
  failed   - refused for good (with the reason),
  unknown  - the connection broke after the message was handed over: it may have gone out,
  throttled - not accepted, nothing went out, and the provider or relay as a whole is saying
             "slow down" or cannot be reached: the whole send pauses; the row loses nothing.
"""

from abc import ABC, abstractmethod
from typing import NamedTuple

from django.conf import settings

SENT, RETRY, FAILED, UNKNOWN, THROTTLED = "sent", "retry", "failed", "unknown", "throttled"


class Outgoing(NamedTuple):
    """One message ready for a transport."""

    delivery_id: int
    sender: str
    recipient: str
    message_id: str
    raw: bytes


class Result(NamedTuple):
    delivery_id: int
    outcome: str
    provider_id: str = ""
    error: str = ""


class Transport(ABC):
    name = "transport"
    #: messages per reservation from the shared rate bucket
    window = 20
    #: messages truly on the wire at once. The engine marks exactly these `sending` before each
    #: hand-over, so a killed worker leaves at most this many rows `unknown`. A transport whose
    #: send cannot be cut short by a crash halfway (discard, the dev outbox) uses its window.
    in_flight = 1

    @abstractmethod
    def send(self, messages):
        """Hand over a list of mime.Outgoing; return one Result per message, in order."""

    def max_send_rate(self):
        """Messages per second the provider allows this account, or None when it sets no limit."""
        return None

    def close(self):
        pass


_cache = {}


def build_transport(description):
    kind = description["transport"]
    if kind == "smtp":
        from .smtp import SMTPTransport

        return SMTPTransport(**{k: v for k, v in description.items() if k != "transport"})
    if kind == "ses":
        from .ses import SESTransport

        return SESTransport(region=description["region"], configuration_set=description["configuration_set"])
    if kind == "outbox":
        from .outbox import OutboxTransport

        return OutboxTransport()
    if kind == "discard":
        from .discard import DiscardTransport

        return DiscardTransport()
    raise ValueError(f"unknown transport {kind!r}")


def get_transport():
    """The transport EMAIL_URL names, made once per process and reused (connections stay open)."""
    key = settings.EMAIL_URL
    if key not in _cache:
        _cache[key] = build_transport(settings.EMAIL_TRANSPORT)
    return _cache[key]


def close_transports():
    while _cache:
        _cache.popitem()[1].close()
