"""Markdown to email HTML, plain text and web page, plus the checks an issue passes before it is sent.

Rendering happens once per issue and audience; the output keeps placeholders that each
recipient's copy fills in (see mime.py). An issue for everyone may hold a paywall marker: free
readers get the part above it and an invitation to become a member, members get it all.
"""

import re
import xml.etree.ElementTree as etree
from html.parser import HTMLParser

import css_inline
import markdown
import nh3
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.html import escape
from django.utils.translation import gettext as _
from markdown.inlinepatterns import InlineProcessor, SimpleTextInlineProcessor

from ownedaudience import links

# Filled per recipient; chosen so that no Markdown, HTML or URL escaping touches them.
NAME = "%%OA_NAME%%"
UNSUBSCRIBE_URL = "%%OA_UNSUBSCRIBE_URL%%"
PREFERENCES_URL = "%%OA_PREFERENCES_URL%%"
# The recipient's signed engagement token, in tracked links and the open pixel (engagement_per_subscriber).
RECIPIENT = "%%OA_RECIPIENT%%"
NAME_TAG = re.compile(r"\{\{\s*name\s*\}\}")
# A line holding only `<!-- paywall -->`, or Ghost's `<!--members-only-->` (its posts import with it).
PAYWALL = re.compile(r"^[ \t]*<!--[ \t]*(?:paywall|members-only)[ \t]*-->[ \t]*$\n?", re.IGNORECASE | re.MULTILINE)

ALLOWED_TAGS = nh3.ALLOWED_TAGS - {"map", "area"}
FORBIDDEN_TAGS = {"script", "iframe", "object", "embed", "form", "input", "button", "style", "link", "meta",
                  "frame", "frameset", "applet", "base", "svg", "math", "textarea", "select"}
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# What no rendered part may hold: neither an email nor the feed's XML can carry it.
UNSAFE_OUTPUT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)


# Emphasis as Markdown 3.10 read it. The rewrite in 3.11 (DelimiterProcessor) pairs runs such as
# `*a **b*` wrongly and cuts text at the wrong offsets, through the placeholders that earlier
# inline patterns (raw HTML, code, links) leave in it: words vanish and `\x02klzzwxh:0000\x03`
# reaches the email, the web page and the feed. These patterns each match a whole span and never
# split a placeholder (it holds no `*` or `_`).
NOT_EMPHASIS = r"((^|(?<=\s))(\*{1,3}|_{1,3})(?=\s|$))"  # a lone run between spaces stays literal
ASTERISK_EMPHASIS = [
    (r"(\*)\1{2}(.+?)\1(.*?)\1{2}", "inner first", "strong,em"),  # ***strongem*** or ***em*strong**
    (r"(\*)\1{2}(.+?)\1{2}(.*?)\1", "inner first", "em,strong"),  # ***strong**em*
    (r"(\*)\1(?!\1)([^*]+?)\1(?!\1)(.+?)\1{3}", "inner last", "strong,em"),  # **strong*em***
    (r"(\*{2})(.+?)\1", "single", "strong"),
    (r"(\*)([^\*]+)\1", "single", "em"),
]
UNDERSCORE_EMPHASIS = [  # never inside a word: snake_case stays as it is
    (r"(_)\1{2}(.+?)\1(.*?)\1{2}", "inner first", "strong,em"),
    (r"(_)\1{2}(.+?)\1{2}(.*?)\1", "inner first", "em,strong"),
    (r"(?<!\w)(\_)\1(?!\1)(.+?)(?<!\w)\1(?!\1)(.+?)\1{3}(?!\w)", "inner last", "strong,em"),
    (r"(?<!\w)(_{2})(?!_)(.+?)(?<!_)\1(?!\w)", "single", "strong"),
    (r"(?<!\w)(_)(?!_)(.+?)(?<!_)\1(?!\w)", "single", "em"),
]


class _Emphasis(InlineProcessor):
    """Strong and em at a run of `token`: the first pattern matching there wins, and the text
    inside gets the patterns after it."""

    def __init__(self, token, patterns):
        super().__init__(re.escape(token))
        self.patterns = [(re.compile(regex, re.DOTALL), shape, tags.split(",")) for regex, shape, tags in patterns]

    def handleMatch(self, m, data):
        for index, (pattern, shape, tags) in enumerate(self.patterns):
            found = pattern.match(data, m.start(0))
            if found:
                return self._element(found, shape, tags, index), found.start(0), found.end(0)
        return None, None, None

    def _element(self, m, shape, tags, index):
        outer = etree.Element(tags[0])
        if shape == "single":  # <outer>2</outer>
            self._fill(m.group(2), outer, None, index)
            return outer
        inner = etree.Element(tags[1])
        if shape == "inner first":  # <outer><inner>2</inner>3</outer>
            self._fill(m.group(2), inner, None, index)
            outer.append(inner)
            self._fill(m.group(3), outer, inner, index)
        else:  # <outer>2<inner>3</inner></outer>
            self._fill(m.group(2), outer, None, index)
            outer.append(inner)
            self._fill(m.group(3), inner, None, index)
        return outer

    def _fill(self, data, parent, last, index):
        """`data` into `parent` after its child `last`, the patterns after `index` applied."""
        offset = pos = 0
        while pos < len(data):
            matched = False
            if self.compiled_re.match(data, pos):
                for sub, (pattern, shape, tags) in enumerate(self.patterns[index + 1:], start=index + 1):
                    found = pattern.match(data, pos)
                    if found:
                        _add_text(parent, last, data[offset:found.start(0)])
                        last = self._element(found, shape, tags, sub)
                        parent.append(last)
                        offset = pos = found.end(0)
                        matched = True
            if not matched:
                pos += 1
        _add_text(parent, last, data[offset:])


def _add_text(parent, last, text):
    if text:
        if last is not None:
            last.tail = text
        else:
            parent.text = text


class EmphasisExtension(markdown.Extension):
    def extendMarkdown(self, md):
        md.inlinePatterns.deregister("em_strong", strict=False)
        md.delimiters = None  # 3.11 keeps its emphasis processor here; it is gone
        md.inlinePatterns.register(SimpleTextInlineProcessor(NOT_EMPHASIS), "not_strong", 70)
        md.inlinePatterns.register(_Emphasis("*", ASTERISK_EMPHASIS), "em_strong", 60)
        md.inlinePatterns.register(_Emphasis("_", UNDERSCORE_EMPHASIS), "em_strong2", 50)


MARKDOWN_EXTENSIONS = ["extra", "sane_lists", "smarty", EmphasisExtension()]


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
    # nh3 reads a character reference as the character: `&#1;` would come out as a raw control character.
    return NAME_TAG.sub(NAME, UNSAFE_OUTPUT.sub("", html))


def unix_lines(body):
    return body.replace("\r\n", "\n").replace("\r", "\n")


def markdown_to_text(body):
    """The body as the plain-text part shows it: Markdown as typed, merge tags left as placeholders."""
    return NAME_TAG.sub(NAME, UNSAFE_OUTPUT.sub("", unix_lines(body)))


def split_paywall(body):
    """(the part above the first paywall marker, whether there is one); without a marker, the whole body.

    Lines end where the text part ends them, so a marker followed by a lone `\\r` still counts: a
    missed marker would hand the members' part to everyone."""
    body = unix_lines(body)
    marker = PAYWALL.search(body)
    return (body[:marker.start()].rstrip(), True) if marker else (body, False)


def readable_body(body, member):
    """The Markdown a reader is shown: all of it for a member, without the markers (the text part
    would show them as typed), and the part above the paywall for everyone else."""
    return PAYWALL.sub("", unix_lines(body)) if member else split_paywall(body)[0]


def upgrade_url(newsletter):
    """Where the invitation to become a member leads: the plans on the newsletter's bio page."""
    return links.page(newsletter) + "#plans"


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


def render_issue(issue, variant):
    """(html, text) of an issue's email for one audience ("free" or "paid"), with per-recipient
    placeholders; the free one stops at the paywall and invites the reader to become a member."""
    newsletter = issue.newsletter
    paid = variant == "paid"
    body = readable_body(issue.body_markdown, member=paid)
    context = {
        "issue": issue,
        "newsletter": newsletter,
        "body_html": markdown_to_html(body),
        "body_text": markdown_to_text(body),
        "web_url": links.issue(issue),
        "unsubscribe_url": UNSUBSCRIBE_URL,
        "preferences_url": PREFERENCES_URL,
        "paid": paid,
        "paywalled": not paid and split_paywall(issue.body_markdown)[1],
        "upgrade_url": upgrade_url(newsletter),
    }
    with translation.override(newsletter.language):
        html = render_to_string("newsletters/email/issue.html", context)
        text = render_to_string("newsletters/email/issue.txt", context)
        if newsletter.engagement_per_subscriber:
            html, text = _with_engagement_notice(html, text)
    return _inliner.inline(html), text.strip() + "\n"


def _with_engagement_notice(html, text):
    """The footer's word that opens and clicks are kept per fan: first line of the footer."""
    notice = _("This newsletter records who opens its emails and who clicks its links.")
    foot = '<div class="foot">'
    at = html.rfind(foot)
    paragraph = f"<p>{escape(notice)}</p>"
    html = html[:at + len(foot)] + paragraph + html[at + len(foot):] if at >= 0 else _before_body_end(html, paragraph)
    head, separator, tail = text.rpartition("\n--\n")
    text = f"{head}{separator}{notice}\n{tail}" if separator else f"{text.rstrip()}\n\n{notice}\n"
    return html, text


def _before_body_end(html, fragment):
    at = html.lower().rfind("</body>")
    return html[:at] + fragment + html[at:] if at >= 0 else html + fragment


def add_open_pixel(html, url):
    """A 1×1 transparent image at the end of the HTML body, loaded from `url` (track_opens)."""
    pixel = (f'<img src="{escape(url)}" width="1" height="1" alt="" '
             'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">')
    return _before_body_end(html, pixel)


def render_web_body(issue, *, member=True):
    """The issue's body for its web page: merge tags read as a neutral greeting. All of it for a
    member (what the send stores), only the part above the paywall for anyone else."""
    with translation.override(issue.newsletter.language):
        return markdown_to_html(readable_body(issue.body_markdown, member)).replace(NAME, _("friend"))
