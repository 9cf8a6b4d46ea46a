"""Markdown to email HTML, plain text and web page, plus the checks an issue passes before it is sent.

Rendering happens once per issue and audience; the output keeps placeholders that each
recipient's copy fills in (see mime.py).
"""

import re
from html.parser import HTMLParser

import css_inline
import markdown
import nh3
from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

# Filled per recipient; chosen so that no Markdown, HTML or URL escaping touches them.
NAME = "%%OA_NAME%%"
UNSUBSCRIBE_URL = "%%OA_UNSUBSCRIBE_URL%%"
PREFERENCES_URL = "%%OA_PREFERENCES_URL%%"
NAME_TAG = re.compile(r"\{\{\s*name\s*\}\}")

MARKDOWN_EXTENSIONS = ["extra", "sane_lists", "smarty"]
ALLOWED_TAGS = nh3.ALLOWED_TAGS - {"map", "area"}
FORBIDDEN_TAGS = {"script", "iframe", "object", "embed", "form", "input", "button", "style", "link", "meta",
                  "frame", "frameset", "applet", "base", "svg", "math", "textarea", "select"}
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)


class _TagScanner(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems = []

    def handle_starttag(self, tag, attrs):
        if tag in FORBIDDEN_TAGS:
            self.problems.append(_("The body holds a <%(tag)s> element, which is not allowed in email.") % {"tag": tag})
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(
                    _("The body holds a script attribute (%(attr)s) on <%(tag)s>.") % {"attr": name, "tag": tag}
                )
            if name in ("href", "src") and value and value.strip().lower().startswith(("javascript:", "vbscript:")):
                self.problems.append(_("The body holds a javascript: link."))


def markdown_to_html(body):
    """Markdown to sanitized HTML; merge tags are left as placeholders."""
    html = markdown.markdown(body, extensions=MARKDOWN_EXTENSIONS, output_format="html")
    html = nh3.clean(html, tags=ALLOWED_TAGS, url_schemes={"http", "https", "mailto"}, link_rel="noopener")
    return NAME_TAG.sub(NAME, html)


def body_problems(body):
    """What is wrong with a Markdown body, in words a creator can act on."""
    problems = []
    if not body.strip():
        problems.append(_("The body is empty."))
    for number, line in enumerate(body.splitlines(), start=1):
        if CONTROL_CHARS.search(line):
            problems.append(_("Line %(line)d holds an invisible control character.") % {"line": number})
            break
    scanner = _TagScanner()
    scanner.feed(markdown.markdown(body, extensions=MARKDOWN_EXTENSIONS))
    scanner.close()
    problems.extend(dict.fromkeys(scanner.problems))  # each problem once, in order
    return problems


def issue_problems(issue):
    """Everything that must be fixed before this issue may be sent; empty when it is ready."""
    problems = []
    newsletter = issue.newsletter
    if not issue.title.strip():
        problems.append(_("The issue has no subject: give it a title."))
    elif "\n" in issue.title or "\r" in issue.title or len(issue.title) > 300:
        problems.append(_("The subject must be one line of at most 300 characters."))
    problems.extend(body_problems(issue.body_markdown))
    if not newsletter.postal_address.strip():
        problems.append(
            _("The newsletter '%(name)s' has no postal address; the law asks for one in every email.")
            % {"name": newsletter.name}
        )
    if not newsletter.sender_email:
        problems.append(_("The newsletter '%(name)s' has no sender address.") % {"name": newsletter.name})
    return problems


def issue_url(issue):
    return settings.SITE_URL + reverse(
        "newsletters:issue_detail", kwargs={"slug": issue.newsletter.slug, "issue_slug": issue.slug}
    )


def render_issue(issue, variant):
    """(html, text) of an issue's email for one audience, with per-recipient placeholders."""
    newsletter = issue.newsletter
    body_html = markdown_to_html(issue.body_markdown)
    context = {
        "issue": issue,
        "newsletter": newsletter,
        "body_html": body_html,
        "body_text": NAME_TAG.sub(NAME, issue.body_markdown.replace("\r\n", "\n")),
        "web_url": issue_url(issue),
        "unsubscribe_url": UNSUBSCRIBE_URL,
        "preferences_url": PREFERENCES_URL,
        "paid": variant == "paid",
    }
    with translation.override(newsletter.language):
        html = render_to_string("newsletters/email/issue.html", context)
        text = render_to_string("newsletters/email/issue.txt", context)
    return _inliner.inline(html), text.strip() + "\n"


def render_web_body(issue):
    """The issue's body for its web page: merge tags read as a neutral greeting."""
    with translation.override(issue.newsletter.language):
        return markdown_to_html(issue.body_markdown).replace(NAME, _("friend"))
