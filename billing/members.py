"""Members' logins, made by billing: no password, a member logs in on the site with an emailed code."""

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password

from subscribers.addresses import normalize_email


def member_user_ensure(email):
    """(user, created). Whoever already has the address (any case; a creator too) is returned untouched."""
    address = normalize_email(email).lower()
    users = get_user_model().objects
    found = users.filter(email__iexact=address).order_by("id").first()
    return (found, False) if found else users.get_or_create(
        username=address, defaults={"email": address, "password": make_password(None)})
