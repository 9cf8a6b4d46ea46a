"""State changes for publications and their creators."""

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from .models import Newsletter

CREATORS_GROUP = "Creators"

# What a creator may do in the admin; the admin's scoping limits it to their own newsletters.
CREATOR_PERMISSIONS = {
    "newsletters": {
        "newsletter": ("view", "add", "change"),
        "sociallink": ("view", "add", "change", "delete"),
        "issue": ("view", "add", "change", "delete"),
    },
    "delivery": {
        "delivery": ("view",),
        "outboxmessage": ("view",),
    },
    "webhooks": {"endpoint": ("view", "add", "change", "delete"), "message": ("view",), "attempt": ("view",)},
    "portability": {"import": ("view", "add"), "importrejection": ("view",)},
    "subscribers": {
        "subscriber": ("view",),
        "subscription": ("view", "add", "change", "delete"),
        "sourcelink": ("view", "add", "change", "delete"),
        "owedemail": ("view",),
        "subscriptionevent": ("view",),
    },
    "api": {"apitoken": ("view", "add", "change")},  # their own tokens only (api/admin.py)
    "billing": {"plan": ("view", "add", "change"), "billingsettings": ("view", "add", "change"),
                "membership": ("view", "add")},
}


def creators_group():
    """The group every creator belongs to, with its permissions brought up to date."""
    group, _ = Group.objects.get_or_create(name=CREATORS_GROUP)
    codenames = [
        f"{action}_{model}"
        for models in CREATOR_PERMISSIONS.values()
        for model, actions in models.items()
        for action in actions
    ]
    permissions = Permission.objects.filter(
        content_type__app_label__in=CREATOR_PERMISSIONS.keys(), codename__in=codenames
    )
    group.permissions.set(permissions)
    return group


@transaction.atomic
def creator_ensure(*, email):
    """The staff login of a creator, made if missing (with no usable password). Returns (user, created)."""
    User = get_user_model()
    user, created = User.objects.get_or_create(
        username=email.lower(), defaults={"email": email.lower(), "is_staff": True}
    )
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    user.groups.add(creators_group())
    return user, created


def creator_reset_password(user):
    """Give a creator a new random password and return it, for printing once."""
    password = secrets.token_urlsafe(12)
    user.set_password(password)
    user.save(update_fields=["password"])
    return password


@transaction.atomic
def newsletter_create(*, slug, name, owner, language="en", **fields):
    """The newsletter `slug` owned by `owner`; made if missing, left as it is otherwise."""
    newsletter, created = Newsletter.objects.get_or_create(
        slug=slug, defaults={"name": name, "language": language, **fields}
    )
    newsletter.owners.add(owner)
    return newsletter, created
