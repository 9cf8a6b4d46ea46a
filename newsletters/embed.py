"""The copy-paste forms a creator puts on other sites, as the admin shows them."""

from django.template.loader import render_to_string
from django.utils import translation
from django.utils.html import escape
from django.utils.translation import gettext as _

from ownedaudience import links


def consent_text_for(newsletter):
    """What the fan agrees to under the form, in the active language."""
    return newsletter.consent_text.strip() or _(
        "By subscribing you agree to receive emails from %(name)s. Every email has a one-click unsubscribe link."
    ) % {"name": newsletter.name}


def html_snippet(newsletter, source="embed"):
    """A plain HTML form: works from any origin with JavaScript off; the answer opens on our site."""
    with translation.override(newsletter.language):
        return render_to_string(
            "newsletters/snippet.html",
            {
                "newsletter": newsletter,
                "action": links.subscribe(newsletter),
                "source": source,
                "consent_text": consent_text_for(newsletter),
            },
        ).strip()


def iframe_snippet(newsletter, source="embed"):
    """The framed form: the answer (and its errors) show inside the frame, in place."""
    src = links.embed(newsletter, source)
    return (
        f'<iframe src="{escape(src)}" title="{escape(newsletter.name)}" loading="lazy" '
        f'style="border:0;width:100%;max-width:32rem;height:320px"></iframe>'
    )
