"""Transports: one small interface in front of SES, SMTP, the dev outbox and a discarding sink.

A transport takes a window of prepared messages and says, for each, one of:
  sent     - the provider accepted it (with its message id),
  retry    - not accepted, nothing went out; try again later (throttling, 4xx, 5xx, timeouts
             before the message was handed over),
  failed   - refused for good (with the reason),
  unknown  - the connection broke after the message was handed over: it may have gone out,
  throttled - not accepted, nothing went out, and the provider or relay as a whole is saying
             "slow down" or cannot be reached: the whole send pauses; the row loses nothing,
  halted   - not accepted, nothing went out, and no retry can help until a person acts: the
             login is wrong, the sender is not verified, the account is paused. The send stops
             itself with the reason; its rows stay pending for the resume.
"""

from abc import ABC, abstractmethod
from typing import NamedTuple

from django.conf import settings
from django.utils.module_loading import import_string

SENT, RETRY, FAILED, UNKNOWN, THROTTLED, HALTED = "sent", "retry", "failed", "unknown", "throttled", "halted"


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


# By dotted path, like Django's EMAIL_BACKEND: the dev outbox keeps its messages in a model of
# the delivery app, so its transport lives there, above this app, and is loaded by name.
KINDS = {
    "smtp": "transports.smtp.SMTPTransport",
    "ses": "transports.ses.SESTransport",
    "outbox": "delivery.outbox_transport.OutboxTransport",
    "discard": "transports.discard.DiscardTransport",
}


def build_transport(description):
    kind = description["transport"]
    if kind not in KINDS:
        raise ValueError(f"unknown transport {kind!r}")
    options = {k: v for k, v in description.items() if k != "transport"}
    if kind == "ses":
        options = {"region": options["region"], "configuration_set": options["configuration_set"]}
    return import_string(KINDS[kind])(**options)


def get_transport():
    """The transport EMAIL_URL names, made once per process and reused (connections stay open)."""
    key = settings.EMAIL_URL
    if key not in _cache:
        _cache[key] = build_transport(settings.EMAIL_TRANSPORT)
    return _cache[key]


def close_transports():
    while _cache:
        _cache.popitem()[1].close()
