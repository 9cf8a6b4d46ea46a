"""Transports: one small interface in front of SES, SMTP, the dev outbox and a discarding sink.

A transport takes a window of prepared messages and says, for each, one of:
  sent     - the provider accepted it (with its message id),
  retry    - not accepted, nothing went out; try again later (throttling, 4xx, 5xx, timeouts
             before the message was handed over),
  failed   - refused for good (with the reason),
  unknown  - the connection broke after the message was handed over: it may have gone out.
"""

from abc import ABC, abstractmethod
from typing import NamedTuple

from django.conf import settings

SENT, RETRY, FAILED, UNKNOWN = "sent", "retry", "failed", "unknown"


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
    #: how many messages are handed over at once (and so may be in flight when a worker dies)
    window = 20

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
