"""Amazon SES v2 SendEmail with raw MIME: one boto3 client per process, several calls in flight."""

import logging
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from django.conf import settings

from . import FAILED, HALTED, RETRY, SENT, THROTTLED, UNKNOWN, Result, Transport
from .smtp import idna_address, needs_smtputf8

log = logging.getLogger(__name__)

# The account is over its rate or quota: the whole send waits; rows lose nothing.
THROTTLE_CODES = {"Throttling", "ThrottlingException", "TooManyRequestsException", "LimitExceededException"}
# The credentials, the sender or the account are wrong: no retry helps until a person acts.
HALT_CODES = {
    "AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
    "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException", "IncompleteSignature",
    "SendingPausedException", "AccountSuspendedException", "MailFromDomainNotVerifiedException",
    "NotAuthorized", "InvalidSignatureException",
}
# Not accepted now, worth trying again later.
TRANSIENT_CODES = {"ServiceUnavailable", "InternalFailure", "RequestTimeout"}
UNVERIFIED = ("not verified", "authority to send")
NO_SMTPUTF8 = "the address has non-ASCII characters before the @ and SES does not support SMTPUTF8"


def halts(code, status, text):
    """An answer about the account rather than the message: every message would get it."""
    if code in HALT_CODES or status in (401, 403):
        return True
    # SendEmail's MessageRejected also covers a message's own fault (a virus); an unverified
    # sender is the account's ("Email address is not verified", or "Did not have authority to
    # send from email …" for an identity this account does not own).
    return code == "MessageRejected" and any(words in text.lower() for words in UNVERIFIED)


class SESTransport(Transport):
    name = "ses"

    def __init__(self, *, region, configuration_set=""):
        self.in_flight = settings.SES_MAX_IN_FLIGHT
        # The engine hands over `in_flight` messages at a time (all of them on the wire at
        # once) and reserves rate for a window of several such rounds.
        self.window = settings.SEND_WINDOW or self.in_flight * 4
        self.configuration_set = configuration_set
        # No retries inside boto3: a retried call after a read timeout could send twice,
        # so the engine decides (it retries only what surely did not go out).
        self.client = boto3.session.Session().client(
            "sesv2",
            region_name=region,
            # An SES-compatible endpoint (a test double, a proxy); boto3's own variable is AWS_ENDPOINT_URL_SESV2.
            endpoint_url=settings.AWS_ENDPOINT_URL_SES or None,
            config=Config(
                retries={"total_max_attempts": 1},
                max_pool_connections=self.in_flight,
                connect_timeout=5,
                read_timeout=30,
            ),
        )
        self.pool = ThreadPoolExecutor(max_workers=self.in_flight, thread_name_prefix="ses")

    def max_send_rate(self):
        try:
            return float(self.client.get_account()["SendQuota"]["MaxSendRate"])
        except (ClientError, BotoCoreError, KeyError) as error:
            log.warning("could not read the SES send rate: %s", error)
            return None

    def send(self, messages):
        return list(self.pool.map(self._send_one, messages))

    def _send_one(self, message):
        """One message, whatever it holds: an error it causes fails it alone, never its window."""
        try:
            params = self._params(message)
        except UnicodeError as error:
            error = f"the domain of the address cannot be written in IDNA (punycode): {error}"
            return Result(message.delivery_id, FAILED, error=error)
        except Exception as error:
            log.exception("SES: delivery %s could not be prepared", message.delivery_id)
            error = f"could not be sent: {type(error).__name__}: {error}"
            return Result(message.delivery_id, FAILED, error=error)
        if params is None:
            return Result(message.delivery_id, FAILED, error=NO_SMTPUTF8)
        try:
            return self._call(message, params)
        except Exception as error:
            log.exception("SES: delivery %s: unexpected error from the call", message.delivery_id)
            error = f"the call may have gone out: {type(error).__name__}: {error}"
            return Result(message.delivery_id, UNKNOWN, error=error)

    def _params(self, message):
        """SendEmail's arguments with domains in IDNA ASCII, as SES wants; None for a non-ASCII local part."""
        sender, recipient = message.sender, message.recipient
        if not (sender.isascii() and recipient.isascii()):
            sender, recipient = idna_address(sender), idna_address(recipient)
            if needs_smtputf8(sender, recipient):
                return None
        params = {
            "FromEmailAddress": sender,
            "Destination": {"ToAddresses": [recipient]},
            "Content": {"Raw": {"Data": message.raw}},
        }
        if self.configuration_set:
            params["ConfigurationSetName"] = self.configuration_set
        return params

    def _call(self, message, params):
        try:
            response = self.client.send_email(**params)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            text = f"{code}: {error.response.get('Error', {}).get('Message', '')}"
            if halts(code, status, text):
                return Result(message.delivery_id, HALTED, error=text)
            if code in THROTTLE_CODES or status == 429:
                return Result(message.delivery_id, THROTTLED, error=text)
            if code in TRANSIENT_CODES or status >= 500:
                return Result(message.delivery_id, RETRY, error=text)
            return Result(message.delivery_id, FAILED, error=text)
        except (EndpointConnectionError, ConnectTimeoutError) as error:
            return Result(message.delivery_id, THROTTLED, error=str(error))
        except (ReadTimeoutError, ConnectionClosedError) as error:
            return Result(message.delivery_id, UNKNOWN, error=f"no answer after the call was made: {error}")
        except NoCredentialsError as error:
            return Result(message.delivery_id, HALTED, error=f"no AWS credentials: {error}")
        except BotoCoreError as error:
            return Result(message.delivery_id, RETRY, error=str(error))
        return Result(message.delivery_id, SENT, provider_id=response["MessageId"])

    def close(self):
        self.pool.shutdown(wait=True)
