"""Is an address ready to send from? `sender_problems(address)` says why not, in words for the admin.

SES: the address, or its domain, must be a verified identity of the account (SES refuses mail
From anything else). SMTP with DKIM: the From domain must be DKIM_DOMAIN or below it, or the
mail goes out unsigned. Answers are kept in Django's cache for 10 minutes.
"""

import hashlib
import logging

from django.conf import settings
from django.core.cache import cache

from . import dkim

log = logging.getLogger(__name__)
CACHE_SECONDS = 600


def sender_problems(address):
    """A list of reasons (empty when none) why mail From `address` cannot go out well."""
    address = (address or "").strip()
    transport = settings.EMAIL_TRANSPORT
    kind = transport.get("transport")
    if "@" not in address:
        return [f"{address!r} is not an email address"]
    key = "oa:sender-problems:" + hashlib.sha256("\0".join(
        (kind, str(transport.get("region", "")), getattr(settings, "AWS_ENDPOINT_URL_SES", ""),
         getattr(settings, "DKIM_DOMAIN", ""), str(dkim.configured()), address.lower())).encode()).hexdigest()
    found = cache.get(key)
    if found is not None:
        return list(found)
    if kind == "ses":
        problems, cacheable = _ses_problems(address, transport.get("region", ""))
    elif kind == "smtp":
        problems, cacheable = _smtp_problems(address), True
    else:
        problems, cacheable = [], True
    if cacheable:
        cache.set(key, problems, CACHE_SECONDS)
    return problems


def _smtp_problems(address):
    if not dkim.configured():
        return []
    domain = address.rpartition("@")[2]
    try:
        domain = dkim.ascii_domain(domain)
    except UnicodeError:
        return [f"the domain {domain!r} cannot be written in IDNA (punycode)"]
    parent = dkim.ascii_domain(settings.DKIM_DOMAIN)
    if dkim.within(domain, parent):
        return []
    return [f"mail from {domain} would go out without a DKIM signature: it is not {parent} or a subdomain "
            f"of it (DKIM_DOMAIN); receivers will not see it authenticated"]


def ses_client(region, service="sesv2"):
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        service, region_name=region or None, endpoint_url=settings.AWS_ENDPOINT_URL_SES or None,
        config=Config(retries={"total_max_attempts": 2}, connect_timeout=5, read_timeout=10),
    )


def ses_identity(client, identity):
    """sesv2 get_email_identity's answer, or None when SES has no such identity."""
    from botocore.exceptions import ClientError

    try:
        return client.get_email_identity(EmailIdentity=identity)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NotFoundException", "NotFound"):
            return None
        raise


def _verified(answer):
    return bool(answer) and (answer.get("VerifiedForSendingStatus") is True
                             or answer.get("VerificationStatus") == "SUCCESS")


def _ses_problems(address, region):
    """(problems, whether to cache them): an SES that cannot be asked is not cached."""
    from botocore.exceptions import BotoCoreError, ClientError

    local, _, domain = address.rpartition("@")
    try:
        ascii_domain = dkim.ascii_domain(domain)
    except UnicodeError:
        return [f"the domain {domain!r} cannot be written in IDNA (punycode)"], True
    ascii_address = f"{local}@{ascii_domain}"
    identities = [ascii_address, ascii_domain]
    try:
        client = ses_client(region)
        answers = {identity: ses_identity(client, identity) for identity in identities}
        if any(_verified(answer) for answer in answers.values()):
            return [], True
        if not any(answers.values()):
            # Identities verified through the first SES API answer there too (and in test doubles, only there).
            v1 = ses_client(region, "ses").get_identity_verification_attributes(Identities=identities)
            attributes = v1.get("VerificationAttributes", {})
            if any(attributes.get(i, {}).get("VerificationStatus") == "Success" for i in identities):
                return [], True
    except (BotoCoreError, ClientError) as error:
        log.warning("could not ask SES about %s: %s", address, error)
        return [f"could not ask SES whether {ascii_address} is verified: {error}"], False
    pending = [i for i, answer in answers.items() if answer and not _verified(answer)]
    if pending:
        status = answers[pending[0]].get("VerificationStatus", "not verified")
        return [f"SES has not verified {pending[0]} yet (status {status}): finish its verification "
                f"(for a domain, publish the Easy DKIM CNAME records) before sending from {ascii_address}"], True
    return [f"neither {ascii_address} nor {ascii_domain} is a verified SES identity in {region}: "
            f"verify the domain (or the address) in the SES console before sending from it"], True
