"""Signed, unguessable tokens for links in emails: unsubscribe, preferences, confirmation.

A token names one subscription and what it may do; it carries an HMAC of both under
SECRET_KEY, so it cannot be forged or turned to another purpose. Unsubscribe and
preference tokens never expire (an old email must still let a fan leave); confirmation
tokens do.
"""

from django.core import signing

PURPOSES = ("unsubscribe", "preferences", "confirm", "engagement.link", "engagement.open")  # the last two name a link, an issue
CONFIRM_MAX_AGE = 7 * 24 * 3600


def _signer(purpose):
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    if purpose == "confirm":
        return signing.TimestampSigner(salt=f"ownedaudience.{purpose}")
    return signing.Signer(salt=f"ownedaudience.{purpose}")


def make_token(purpose, subscription_id):
    return _signer(purpose).sign(signing.b62_encode(subscription_id))


def read_token(purpose, token):
    """The subscription id in `token`, or None when it is forged, altered or (confirm) too old."""
    try:
        signer = _signer(purpose)
        if purpose == "confirm":
            value = signer.unsign(token, max_age=CONFIRM_MAX_AGE)
        else:
            value = signer.unsign(token)
        return signing.b62_decode(value)
    except (signing.BadSignature, ValueError):
        return None
