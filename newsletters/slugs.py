"""A newsletter's slug is the first segment of its public address, so it may not shadow the site's own."""

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# Top-level paths the site uses now or is likely to; a newsletter called "admin" would hide /admin/.
RESERVED_SLUGS = frozenset(
    """
    about account accounts admin api assets billing checkout confirm embed favicon feed healthz
    help issues l login logout media members o preferences privacy r robots s ses signup sns static
    stripe subscribe terms unsubscribe webhooks well-known www
    """.split()
)


def validate_public_slug(value):
    if value.lower() in RESERVED_SLUGS:
        raise ValidationError(
            _("“%(slug)s” is used by the site itself; pick another."), params={"slug": value}
        )
