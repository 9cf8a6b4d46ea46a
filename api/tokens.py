"""API tokens: made (the secret shown once), checked, revoked. Only a digest is ever stored."""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from .models import ApiToken

TOKEN_START = "oa_"
HEX = "0123456789abcdef"
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often


def digest_of(secret):
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def token_create(*, user, name):
    """A new token for `user`: (the row, the whole token string, to show once)."""
    prefix, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=prefix, digest=digest_of(secret))
    return token, f"{TOKEN_START}{prefix}_{secret}"


def tokens_revoke(queryset):
    """Revoke the tokens of `queryset` not revoked yet; returns how many."""
    return queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


def token_authenticate(raw):
    """The live token `raw` names (its user active staff), or None."""
    if not raw.startswith(TOKEN_START):
        return None
    prefix, _, secret = raw[len(TOKEN_START):].partition("_")
    if len(prefix) != 8 or prefix.strip(HEX) or not secret or len(secret) > 200:
        return None
    digest = digest_of(secret)
    for token in ApiToken.objects.filter(prefix=prefix, revoked_at__isnull=True).select_related("user"):
        if hmac.compare_digest(token.digest, digest):
            if not (token.user.is_active and token.user.is_staff):
                return None
            _touch(token)
            return token
    return None


def _touch(token):
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - TOUCH_EVERY)
        ).update(last_used_at=now)
        token.last_used_at = now
