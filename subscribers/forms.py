"""Validation of what a stranger posts to a signup form: strict, bounded, with clear errors."""

import re
import unicodedata

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _
from email_validator import EmailNotValidError, validate_email

# Categories no honest name or address contains: control and format characters (bidi
# overrides, zero-width tricks), line and paragraph separators, private use, surrogates.
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"}
# Emoji sequences need the zero-width joiner and the variation selectors; keep those.
_ALLOWED_FORMAT = {"\u200d", "\ufe0e", "\ufe0f"}
SOURCE_MAX = 100
FORMS = ("page", "embed", "iframe", "api")


def has_control_characters(value):
    return any(
        unicodedata.category(char) in _FORBIDDEN_CATEGORIES and char not in _ALLOWED_FORMAT for char in value
    )


def clean_source(value):
    """A source label from a URL or hidden field: lower-case letters, digits, dot, dash, underscore."""
    value = re.sub(r"[^a-z0-9._-]+", "-", str(value or "").lower()).strip("-.")
    return value[:SOURCE_MAX]


def domain_blocked(domain, blocked):
    """True when `domain` is in `blocked` or below one of its entries."""
    domain = domain.lower().rstrip(".")
    for entry in blocked:
        entry = entry.strip().lower().lstrip("@").rstrip(".")
        if entry and (domain == entry or domain.endswith("." + entry)):
            return True
    return False


def blocked_domains_of(newsletter):
    return [*settings.SIGNUP_BLOCKED_DOMAINS, *(newsletter.blocked_domains or "").split()]


class SignupForm(forms.Form):
    email = forms.CharField(
        max_length=254,
        error_messages={
            "required": _("Enter your email address."),
            "max_length": _("That address is too long."),
        },
    )
    name = forms.CharField(
        max_length=200, required=False, error_messages={"max_length": _("That name is too long.")}
    )

    def __init__(self, *args, newsletter, **kwargs):
        super().__init__(*args, **kwargs)
        self.newsletter = newsletter
        self.domain = ""

    def clean_email(self):
        value = self.cleaned_data["email"]
        if has_control_characters(value) or any(char.isspace() for char in value):
            raise forms.ValidationError(
                _("Enter a valid email address, like name@example.com."), code="invalid"
            )
        try:
            # No DNS lookup on the request path; a dead address simply never confirms.
            checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError:
            raise forms.ValidationError(
                _("Enter a valid email address, like name@example.com."), code="invalid"
            )
        if domain_blocked(checked.ascii_domain, blocked_domains_of(self.newsletter)) or domain_blocked(
            checked.domain, blocked_domains_of(self.newsletter)
        ):
            raise forms.ValidationError(
                _("This newsletter does not take addresses at %(domain)s; please use another one."),
                code="blocked",
                params={"domain": checked.domain},
            )
        self.domain = checked.ascii_domain
        # An IDN domain is kept in its IDNA form (`xn--…`): one spelling per address, and the one
        # every relay can carry.
        return checked.ascii_email or checked.normalized

    def clean_name(self):
        value = self.cleaned_data["name"]
        if has_control_characters(value):
            raise forms.ValidationError(_("Names cannot contain control characters."), code="invalid")
        return value

    def errors_by_field(self):
        """{"email": ["…"]}, plain strings in the active language, for JSON answers."""
        return {field: [str(message) for message in messages] for field, messages in self.errors.items()}
