"""Verifying Amazon SNS messages, as AWS documents it ("Verifying the signatures of Amazon SNS messages").

Anyone can post to the endpoint, so nothing in a message is believed before its signature
verifies against a certificate fetched over HTTPS from an SNS host, and a message is refused
before any network call when its topic is not ours, its time is stale, or its certificate URL is
not an `https://sns.<region>.amazonaws.com` address.
"""

import base64
import binascii
import hashlib
import http.client
import json
import re
import socket
import ssl
from datetime import timedelta
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django.utils.dateparse import parse_datetime

NOTIFICATION = "Notification"
SUBSCRIBE = "SubscriptionConfirmation"
UNSUBSCRIBE = "UnsubscribeConfirmation"
# The fields each type signs, in AWS's order; "Subject" is signed only when the message has one.
SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIBE: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    UNSUBSCRIBE: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
OPTIONAL_FIELDS = {"Subject"}
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
FUTURE_SLACK = timedelta(minutes=5)
CERTIFICATE_CACHE_SECONDS = 24 * 3600
TIMEOUT_SECONDS = 10
MAX_ANSWER_BYTES = 64 * 1024


class Refused(Exception):
    """The message is not one we accept; `status` is the HTTP answer (SNS does not retry a 4xx)."""

    def __init__(self, reason, status=400):
        super().__init__(reason)
        self.status = status


class Unreachable(Exception):
    """An SNS host did not answer as it should: worth a 5xx, so SNS sends the message again."""


def verified_message(body, message_type):
    """The SNS message in `body` (bytes), once everything about it checks out; Refused if not."""
    message = _parsed(body, message_type)
    if message["TopicArn"] not in settings.SES_SNS_TOPIC_ARNS:
        raise Refused(f"topic {message['TopicArn']} is not configured", status=403)
    _check_fresh(message["Timestamp"])
    check_sns_url(message["SigningCertURL"], certificate=True)
    if message.get("SubscribeURL"):
        check_sns_url(message["SubscribeURL"])
    _check_signature(message)
    return message


def _parsed(body, message_type):
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise Refused("the body is not JSON") from None
    if not isinstance(message, dict) or message.get("Type") not in SIGNED_FIELDS:
        raise Refused("not an SNS message")
    if message["Type"] != message_type:
        raise Refused("the x-amz-sns-message-type header does not match the message")
    required = [field for field in SIGNED_FIELDS[message["Type"]] if field not in OPTIONAL_FIELDS]
    required += ["Signature", "SignatureVersion", "SigningCertURL"]
    if not all(isinstance(message.get(field), str) for field in required):
        raise Refused("a field SNS always sends is missing")
    return message


def _check_fresh(stamp):
    at = parse_datetime(stamp)
    if at is None or at.tzinfo is None:
        raise Refused("the timestamp cannot be read")
    now = timezone.now()
    if at < now - timedelta(seconds=settings.SNS_MAX_AGE_SECONDS) or at > now + FUTURE_SLACK:
        raise Refused("the message is stale")


def check_sns_url(url, *, certificate=False):
    """Refuse, before any connection, a URL that is not HTTPS on an SNS host (a certificate: a .pem)."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise Refused("SNS URLs must be https://")
    try:
        port = parts.port
    except ValueError:
        raise Refused("the URL's port cannot be read") from None
    if not SNS_HOST.fullmatch(parts.hostname or "") or port not in (None, 443) or parts.username is not None:
        raise Refused("the URL is not on an sns.<region>.amazonaws.com host")
    if certificate and not parts.path.endswith(".pem"):
        raise Refused("the signing certificate URL is not a .pem file")


def _check_signature(message):
    algorithm = HASHES.get(message["SignatureVersion"])
    if algorithm is None:
        raise Refused("unknown SignatureVersion")
    try:
        signature = base64.b64decode(message["Signature"], validate=True)
    except binascii.Error:
        raise Refused("the signature is not base64") from None
    key = signing_certificate(message["SigningCertURL"]).public_key()
    try:
        key.verify(signature, canonical_string(message), padding.PKCS1v15(), algorithm())
    except (InvalidSignature, TypeError, ValueError):
        raise Refused("the signature does not verify") from None


def canonical_string(message):
    """What SNS signed: "Key\\nvalue\\n" for each of its type's fields the message has, in order."""
    return "".join(
        f"{field}\n{message[field]}\n" for field in SIGNED_FIELDS[message["Type"]] if field in message
    ).encode()


def signing_certificate(url):
    """The certificate at `url` (already checked by check_sns_url), from the cache or fetched once."""
    key = "sns-cert:" + hashlib.sha256(url.encode()).hexdigest()
    pem = cache.get(key)
    if pem is None:
        pem = https_get(url)
        cache.set(key, pem, CERTIFICATE_CACHE_SECONDS)
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        cache.delete(key)
        raise Unreachable("the signing certificate URL did not answer with a PEM certificate") from None


def https_get(url):
    """GET an SNS URL over TLS, the server's certificate verified for the URL's own host name.

    SNS_CERTIFICATE_CONNECT_TO ("host:port") only changes where the connection goes (a test's
    loopback stand-in); the name checked in the certificate stays the URL's. SNS_CA_BUNDLE
    replaces the system's trusted CAs.
    """
    parts = urlsplit(url)
    host, port = parts.hostname, 443
    if settings.SNS_CERTIFICATE_CONNECT_TO:
        host, _, target = settings.SNS_CERTIFICATE_CONNECT_TO.rpartition(":")
        port = int(target)
    context = ssl.create_default_context(cafile=settings.SNS_CA_BUNDLE or None)
    connection = http.client.HTTPSConnection(parts.hostname, timeout=TIMEOUT_SECONDS, context=context)
    try:
        raw = socket.create_connection((host, port), timeout=TIMEOUT_SECONDS)
        connection.sock = context.wrap_socket(raw, server_hostname=parts.hostname)
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        answer = connection.getresponse()
        body = answer.read(MAX_ANSWER_BYTES)
    except (OSError, http.client.HTTPException) as error:
        raise Unreachable(f"{parts.hostname}: {error}") from None
    finally:
        connection.close()
    if answer.status != 200:
        raise Unreachable(f"{parts.hostname} answered {answer.status}")
    return body
