"""Checks on what a creator saves that ends up in an email header."""

import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# A line break ends the header and starts another (a Bcc the creator never wrote), and makes
# every confirmation fail to build; other control characters are refused or shown as garbage.
HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def validate_header_safe(value):
    """A sender name, subject or address: one line, without control characters."""
    if value and HEADER_UNSAFE.search(value):
        raise ValidationError(
            _("This goes into an email header: it must be one line, without line breaks or control characters."),
            code="header_unsafe",
        )
