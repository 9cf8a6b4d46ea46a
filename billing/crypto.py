"""Secrets a creator types in (their own Stripe keys), encrypted at rest.

Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) under a key derived with HKDF from
BILLING_ENCRYPTION_KEY, or SECRET_KEY when that is not set. A value encrypted under another key
(the key was rotated without BILLING_ENCRYPTION_KEY) reads as "" and the admin asks for it again.
"""

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


def _fernet():
    secret = (settings.BILLING_ENCRYPTION_KEY or settings.SECRET_KEY).encode()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"ownedaudience-billing", info=b"stripe-keys").derive(secret)
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(value):
    return _fernet().encrypt(value.encode()).decode() if value else ""


def decrypt(token):
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        return ""
