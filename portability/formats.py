"""Subscriber exports of other platforms, read as a stream of records (pure Python, no database).

read(stream) yields a Row for every importable input row and a Rejected for every row that is
not (an invalid or empty address, a Substack deletion-request placeholder), one at a time, so
memory stays flat whatever the file's size. A .zip (Substack's full export, Mailchimp's audience
export) is read member by member: every CSV with a subscriber list's header; posts.csv, posts/…
and the rest are skipped. The rules (which header is which platform, what its statuses and tiers
are in ours, what a valid address is) are the samples' README: tests/fixtures/imports/README.md.

Speed: a line with no double quote is split on commas (what csv.reader would make of it), and
so is the part of a line before its first quote when the row function reads no cell past it and
the line holds whole quoted cells (Mailchimp's TAGS, last); any other line goes through
csv.reader with the lines its quoted cells span. Each format's row function is built once per
file, with its column indices resolved.
"""

import csv
import io
import re
import socket
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import chain
from typing import NamedTuple

FORMATS = ("substack", "substack_dashboard", "mailchimp", "ghost", "kit", "buttondown", "beehiiv", "ownedaudience")
STATUSES = ("active", "pending", "unsubscribed", "bounced", "complained")  # copied from subscribers.models
TIERS = ("free", "paid", "comped")
OWN_HEADER = ("email", "name", "status", "tier", "source", "created_at", "confirmed_at", "unsubscribed_at",
              "consent_form", "consent_text", "consent_at", "consent_ip", "consent_user_agent")
EMAIL_COLUMNS = ("email", "email address", "email_address", "e-mail")
PLACEHOLDER = "@deletion-request.substack.com"

# The README's valid address: a dot-atom local part; dot-separated labels of letters, digits and
# inner hyphens; a TLD of 2+ letters. Possessive quantifiers: no backtracking, linear time. Beyond
# ASCII, letters may be Unicode ones (IDN domains; local parts, which SMTPUTF8 sending supports).
_A, _L = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]", "[A-Za-z0-9]"
_UA, _UL, _ULETTER = r"[\w!#$%&'*+/=?^`{|}~-]", r"[^\W_]", r"[^\W\d_]"
_TLD = r"(?:[Xx][Nn]--[A-Za-z0-9]++(?:-++[A-Za-z0-9]++)*+|%s{2,}+)"
_ASCII_EMAIL = re.compile(rf"{_A}++(?:\.{_A}++)*+@(?:{_L}++(?:-++{_L}++)*+\.)++{_TLD % '[A-Za-z]'}").fullmatch
_UNICODE_EMAIL = re.compile(rf"{_UA}++(?:\.{_UA}++)*+@(?:{_UL}++(?:-++{_UL}++)*+\.)++{_TLD % _ULETTER}").fullmatch
_TRUE = frozenset(("true", "yes", "y", "1", "t"))
_BD_NAME = re.compile(r"""['"](first_name|last_name|name)['"]\s*:\s*(?:'([^']*)'|"([^"]*)")""")
_ZONE = re.compile(r"\s*(?:UTC|GMT)$|(?<=\d) +(?=[+-]\d\d:?\d\d$)", re.IGNORECASE)
_new, _iso = tuple.__new__, datetime.fromisoformat


class Row(NamedTuple):
    """One valid input row."""

    line: int  # physical line where the row starts in its file (the header is line 1)
    email: str  # trimmed, case kept
    key: str  # email.lower(): the de-duplication key
    status: str  # one of STATUSES
    tier: str  # one of TIERS
    name: str
    source: str  # at most 100 characters
    created_at: datetime | None  # every datetime timezone-aware, UTC
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    consent_at: datetime | None
    consent_ip: str | None  # a valid IPv4/IPv6 literal, or None
    note: str  # the platform's own word for a status that is not plain active
    consent_form: str = ""  # these three: the "ownedaudience" format only
    consent_text: str = ""
    consent_user_agent: str = ""


class Rejected(NamedTuple):
    """One input row not imported, for the report."""

    line: int
    value: str  # the raw cell, at most 254 characters
    reason: str  # in a zip, after the member's name: "cleaned_members_export_x.csv: …"


class FormatError(ValueError):
    """The file cannot be read as a subscriber list; the message says why, for the creator."""


class Reader(Iterator):
    """What read() returns: an iterator of Row | Rejected, and in `.format` the format found."""

    def __init__(self, format, records):
        self.format, self._records, self.close = format, records, records.close

    def __iter__(self):
        return self._records

    def __next__(self):
        return next(self._records)


def _norm(cell):
    return cell.strip(' \t\r\n\ufeff"').lower()


_SIGNATURES = (  # (format, header names it has all of, names it has one of at least), tried in order
    ("ownedaudience", {"email", "status", "tier", "consent_form", "consent_user_agent"}, {"email"}),
    ("substack", {"email", "email_disabled"}, {"email"}),
    ("substack_dashboard", {"email", "subscription type"}, {"email"}),
    ("mailchimp", {"email address"}, {"member_rating", "optin_time", "confirm_time", "last_changed", "unsub_time",
                                      "clean_time", "leid", "euid"}),
    ("ghost", {"email"}, {"subscribed_to_emails", "complimentary_plan"}),
    ("buttondown", {"email", "subscriber_type"}, {"email"}),
    ("beehiiv", {"email", "status"}, {"tier", "subscription_tier", "subscription date (substack)"}),
    ("kit", set(), {"state", "status"}),  # with an email column, as every format
)


def detect(header: list[str]) -> str:
    """The format of a file from its header row alone (names trimmed, any case, BOM stripped)."""
    names = {_norm(cell) for cell in header}
    for format, every, some in _SIGNATURES if names & set(EMAIL_COLUMNS) else ():
        if every <= names and some & names:
            return format
    raise FormatError(f"This file's header looks like none of {', '.join(FORMATS)}; "
                      f"the first line is: {','.join(header).lstrip(chr(0xFEFF))[:300]}")


def read(stream, *, format="auto", name="") -> Reader:
    """Row | Rejected for every input row of `stream` (binary); FormatError if it is no subscriber list.

    The header (of a zip, every member's) is read here, so a wrong file raises at the call; a
    byte that is not UTF-8 further down raises FormatError from the iteration."""
    if format != "auto" and format not in FORMATS:
        raise FormatError(f"Unknown format {format!r}: use auto or one of {', '.join(FORMATS)}")
    if _is_zip(stream, name):
        return _read_zip(stream, format)
    if not (source := _open(stream, "This file")):
        raise FormatError("This file is empty: it has no header row and no subscriber")
    found = _choose(format, source[1], "This file")
    return Reader(found, _rows(source, found, "", "This file"))


def _choose(format, header, what):
    if format == "auto":
        return detect(header)
    if not {_norm(cell) for cell in header} & set(EMAIL_COLUMNS):
        raise FormatError(f"--format {format} was asked for but the header has no email column "
                          f"({' or '.join(EMAIL_COLUMNS)}); {what}'s first line is: {','.join(header)[:300]}")
    return format


def _is_zip(stream, name):  # by its name, or else by its first bytes
    if name.lower().endswith(".zip"):
        return True
    try:
        start = stream.tell() if stream.seekable() else None
    except (AttributeError, OSError, ValueError):
        return False
    head = stream.read(4) if start is not None else b""
    return start is not None and stream.seek(start) == start and head == b"PK\x03\x04"


class _Unclosed(io.BufferedIOBase):
    """The caller's stream for TextIOWrapper (which would close it when collected), counting what is read."""

    def __init__(self, raw):
        super().__init__()
        self._read, self.bytes, self.lines = raw.read, 0, 0

    def readable(self):
        return True

    def read(self, size=-1):  # a call per 64 KiB
        data = self._read(size)
        self.bytes, self.lines = self.bytes + len(data), self.lines + data.count(b"\n")
        return data

    read1 = read


def _open(binary, what):
    """(text, header, lines read) of a binary CSV stream, its header read; None if it is empty."""
    # utf-8, not utf-8-sig (whose decoder is slower): a BOM can only start the header, which _norm strips.
    text = io.TextIOWrapper(_Unclosed(binary), encoding="utf-8", newline="")
    text._CHUNK_SIZE = 1 << 16
    reader = csv.reader(text)
    try:
        for header in reader:
            if any(cell.strip(" \t\r\n\ufeff") for cell in header):
                return text, header, reader.line_num
    except UnicodeDecodeError as error:
        raise _not_utf8(what, error, text.buffer) from None
    except csv.Error as error:
        raise FormatError(f"{what}: the header row cannot be read as CSV ({error})") from None
    text.detach()
    return None


def _not_utf8(what, error, read):
    """A FormatError naming the line and the byte where the file stops being UTF-8."""
    data = error.object  # the bytes being decoded: the last ones read, and any held back before them
    offset, line = read.bytes - len(data) + error.start, read.lines - data[error.start:].count(b"\n") + 1
    return FormatError(f"{what} is not UTF-8 text: line {line} has a byte UTF-8 cannot read (0x{data[error.start]:02x}, "
                       f"byte {offset + 1} of the file). Export or save it again as UTF-8 (in Excel: Save As, "
                       f"“CSV UTF-8”).")


def _rows(source, format, prefix, what, close=None):
    """The records of one CSV file after its header: the address checked here, the rest per format."""
    text, header, last = source
    width, cols = len(header), {}
    for i, cell in enumerate(header):
        cols.setdefault(_norm(cell), i)

    used = [0]

    def col(names):  # the index of the first of "a|b|c" present; else `width`, a cell always ""
        index = next((cols[name] for name in names.split("|") if name in cols), width)
        used.append(index if index < width else 0)
        return index

    ei, fn, pad = col("|".join(EMAIL_COLUMNS)), _BUILDERS[format](col, cols), [""] * (width + 1)
    reach = max(used) + 1  # fn reads no cell past row[reach - 1]
    ascii_email, unicode_email, slot = _ASCII_EMAIL, _UNICODE_EMAIL, []
    one = csv.reader(iter(slot.pop, None))  # fed one line at a time, by C calls only
    try:
        for physical in text:
            last += 1
            line = last
            cut = physical.find('"')
            if cut < 0:
                row = physical.rstrip("\r\n").split(",")
            else:  # the cells before the first quote, if they are all fn reads and the record ends here
                row = physical[:cut].split(",")
                odd = physical.count('"', cut) & 1
                if odd or len(row) <= reach:
                    try:  # csv.reader: `one` for a record on this line (its quotes even), else from here on
                        if odd:
                            raise IndexError
                        slot.append(physical)
                        row = next(one)
                    except IndexError:
                        slot.clear()
                        reader = csv.reader(chain((physical,), text))
                        try:
                            row = next(reader)
                        except csv.Error as error:
                            row = str(error)
                        last += reader.line_num - 1
                    except csv.Error as error:  # a cell past csv.field_size_limit()
                        row = str(error)
                    if type(row) is str:
                        yield Rejected(line, "", f"{prefix}row not read: {row}")
                        continue
            n = len(row)
            if n == width:
                row.append("")
            elif n < width:
                row.extend(pad[n:])
            else:
                del row[width:]
                row.append("")
            raw = row[ei]
            email = raw.strip()
            if (ascii_email(email) if email.isascii() else unicode_email(email)) and len(email) <= 254:
                key = email.lower()
                if key.endswith(PLACEHOLDER):
                    yield Rejected(line, raw[:254], prefix + "Substack deletion-request placeholder")
                else:
                    yield fn(row, line, email, key)
            elif email:
                yield Rejected(line, raw[:254], prefix + "not a valid email address")
            elif physical.strip(' \t\r\n",') or any(cell.strip() for cell in row):  # not a line of only commas
                yield Rejected(line, raw[:254], prefix + "empty email")
    except UnicodeDecodeError as error:
        raise _not_utf8(what, error, text.buffer) from None
    finally:
        text.detach()
        if close:
            close()


def _read_zip(stream, format):
    try:
        archive = zipfile.ZipFile(stream)
        members = [info for info in archive.infolist() if not info.is_dir() and info.filename.lower().endswith(".csv")
                   and "__MACOSX/" not in info.filename and not info.filename.rpartition("/")[2].startswith("._")]
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise FormatError(f"This .zip file cannot be opened: {error}") from None
    chosen, skipped = [], []
    for info in members:  # a member that cannot be read stops the import: it may hold suppressions
        what = f"{info.filename} (in the zip)"
        try:
            with archive.open(info) as member:
                source = _open(member, what)
        except (RuntimeError, NotImplementedError, zipfile.BadZipFile) as error:  # encrypted, unknown method
            raise FormatError(f"{what} cannot be read: {error}") from None
        if source is None:
            continue
        source[0].detach()
        try:
            found = detect(source[1])
        except FormatError as error:  # posts.csv, opens…: skipped, unless a format was asked for
            if format == "auto" or info.filename.lower().startswith("posts"):
                skipped.append(f"{info.filename}: {str(error)[:120]}")
                continue
            found = _choose(format, source[1], what)
        if format in ("auto", found):
            chosen.append((info, found))
    if not chosen:
        raise FormatError(f"This zip holds no subscriber list ({'; '.join(skipped[:5]) or 'and no CSV file'})")
    return Reader(chosen[0][1], _zip_records(archive, chosen))


def _zip_records(archive, chosen):
    try:
        for info, found in chosen:
            what, member = f"{info.filename} (in the zip)", archive.open(info)
            yield from _rows(_open(member, what), found, f"{info.filename}: ", what, member.close)
    finally:
        archive.close()


# Values: an unparsable date is None, never an error.

def _dt(value):
    """An aware UTC datetime from ISO-8601 (Z, an offset, no zone meaning UTC, a date only), `… UTC`."""
    if not value:
        return None
    try:
        when = _iso(value)
    except ValueError:
        try:  # beehiiv's `2023-03-24 10:23:10 UTC`, a space before an offset, padding
            when = _iso(_ZONE.sub("", value.strip()))
        except ValueError:
            return None
    return when if when.tzinfo is UTC else _utc(when)


def _utc(when):
    try:
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _ip(value, _pton=socket.inet_pton, _ntop=socket.inet_ntop, _v4=socket.AF_INET, _v6=socket.AF_INET6):
    """A valid IPv4 or IPv6 literal (IPv6 in its short form), else None."""
    if not value:
        return None
    try:
        return _pton(_v4, value) and value
    except (OSError, ValueError):
        value = value.strip()
    try:
        return _ntop(_v6, _pton(_v6, value)) if ":" in value else _pton(_v4, value) and value
    except (OSError, ValueError):
        return None


def _true(value):
    return value == "true" or (value != "false" and value.strip().lower() in _TRUE)


def _name(first, last):
    first, last = first.strip(), last.strip()
    return f"{first} {last}" if first and last else first or last


# One builder per format: given col("a|b") (the index of the first column of these present, else
# of a cell always ""), it returns fn(row, line, email, key) -> Row, every index resolved once.

_SUBSTACK_TYPES = {"paid": "paid", "founding": "paid", "ios_app": "paid", "comp": "comped", "gift": "comped"}


def _substack(col, cols):
    active, disabled, created, paid_once, kind, name = map(col, (
        "active_subscription", "email_disabled", "created_at", "first_payment_at", "type", "name"))

    def fn(row, line, email, key):
        flag, what, paid, created_at = row[disabled], row[kind], row[active], row[created]
        off = flag == "true" or (flag != "false" and _true(flag))
        if what:  # the Subscribers export's `type` (paid, comp, gift, ios_app), else active_subscription
            tier = _SUBSTACK_TYPES.get(what.strip().lower(), "free")
        else:
            tier = "paid" if paid == "true" or (paid != "false" and _true(paid)) else "free"
        note = ("email_disabled; " if off else "") + "former paid member" if tier == "free" and row[paid_once] else (
            "email_disabled" if off else "")
        try:  # _dt, inlined: Substack writes `2023-01-14T09:12:44.120Z`
            created_at = _iso(created_at) if created_at else None
            if created_at is not None and created_at.tzinfo is not UTC:
                created_at = _utc(created_at)
        except ValueError:
            created_at = _dt(created_at)
        return _new(Row, (line, email, key, "unsubscribed" if off else "active", tier, row[name].strip(), "",
                          created_at, None, None, None, None, note, "", "", ""))
    return fn


def _substack_dashboard(col, cols):  # the README: the header is verbatim, the cell values guessed
    name, kind, created, cancelled, free_source, paid_source, receiving = map(col, (
        "name", "subscription type", "subscription date", "cancel date", "subscription source (free)",
        "subscription source (paid)", "receiving emails for"))
    knows_receiving = "receiving emails for" in cols

    def fn(row, line, email, key):
        what = row[kind].strip().lower()
        tier = "comped" if "comp" in what or "gift" in what else "paid" if any(
            word in what for word in ("paid", "founding", "month", "annual", "year")) else "free"
        off = knows_receiving and not row[receiving].strip()
        note = ("not receiving emails; " if off else "") + "former paid member" if (
            tier == "free" and row[cancelled].strip()) else "not receiving emails" if off else ""
        return _new(Row, (line, email, key, "unsubscribed" if off else "active", tier, row[name].strip(),
                          (row[free_source].strip() or row[paid_source].strip())[:100], _dt(row[created]), None,
                          None, None, None, note, "", "", ""))
    return fn


def _mailchimp(col, cols):  # which of the audience's three files this is: told by its header, not a cell
    status, note, ended = (("unsubscribed", "unsubscribed", col("unsub_time")) if "unsub_time" in cols else
                           ("bounced", "cleaned", col("clean_time")) if "clean_time" in cols else ("active", "", col("")))
    first, last, optin, optin_ip, confirm, confirm_ip = map(col, (
        "first name|fname|first_name", "last name|lname|last_name", "optin_time", "optin_ip", "confirm_time", "confirm_ip"))

    def fn(row, line, email, key):
        opted, confirmed, ip = row[optin], row[confirm], row[optin_ip] or row[confirm_ip]
        try:  # _dt, inlined for the zone-less `YYYY-MM-DD HH:MM:SS` Mailchimp writes (UTC)
            opted_at = _iso(opted + "+00:00") if len(opted) == 19 else _dt(opted)
            confirmed_at = opted_at if confirmed == opted else _iso(confirmed + "+00:00") if len(
                confirmed) == 19 else _dt(confirmed)
        except ValueError:
            opted_at, confirmed_at = _dt(opted), _dt(confirmed)
        consent_at = opted_at or confirmed_at
        given, family = row[first].strip(), row[last].strip()
        return _new(Row, (line, email, key, status, "free", f"{given} {family}" if given and family else given or family,
                          "", consent_at, confirmed_at, _dt(row[ended]), consent_at, _ip(ip),
                          note, "", "", ""))
    return fn


def _ghost(col, cols):
    name, subscribed, comped, stripe, created, deleted = map(col, (
        "name", "subscribed_to_emails", "complimentary_plan", "stripe_customer_id", "created_at", "deleted_at"))

    def fn(row, line, email, key):
        status, note = ("unsubscribed", "deleted") if row[deleted].strip() else (
            "unsubscribed", "subscribed_to_emails=false") if row[subscribed].strip().lower() == "false" else ("active", "")
        tier = "comped" if _true(row[comped]) else "paid" if row[stripe].strip() else "free"  # stripe: `cus_…`, `auto`
        return _new(Row, (line, email, key, status, tier, row[name].strip(), "", _dt(row[created]), None,
                          _dt(row[deleted]), None, None, note, "", "", ""))
    return fn


_KIT = {"active": "active", "cancelled": "unsubscribed", "canceled": "unsubscribed", "unsubscribed": "unsubscribed",
        "bounced": "bounced", "complained": "complained", "inactive": "pending"}


def _kit(col, cols):
    state, first, last, name, created, source = map(col, (
        "state|status", "first_name|first name", "last_name|last name", "name", "created_at|created at|subscribed at",
        "source|referrer|referrer_url"))

    def fn(row, line, email, key):
        word = row[state].strip().lower()
        status = _KIT.get(word, "pending") if word else "active"  # a state not known is not mailable
        return _new(Row, (line, email, key, status, "free", _name(row[first], row[last]) or row[name].strip(),
                          row[source].strip()[:100], _dt(row[created]), None, None, None, None,
                          "" if status == "active" else word, "", "", ""))
    return fn


_BUTTONDOWN = {  # subscriber_type: (status, tier); the word is the note, but for the plain three
    "regular": ("active", "free"), "premium": ("active", "paid"), "gifted": ("active", "comped"),
    "churned": ("active", "free"), "trialed": ("active", "paid"), "churning": ("active", "paid"),
    "past_due": ("active", "paid"), "paused": ("active", "paid"), "unactivated": ("pending", "free"),
    "unsubscribed": ("unsubscribed", "free"), "undeliverable": ("bounced", "free"),
    "complained": ("complained", "free"), "removed": ("unsubscribed", "free"), "blocked": ("unsubscribed", "free")}


def _buttondown(col, cols):
    kind, utm, referrer, created, ip, subscribed, unsubscribed, metadata, name = map(col, (
        "subscriber_type", "utm_source", "referrer_url", "creation_date", "ip_address", "subscription_date",
        "unsubscription_date", "metadata", "name"))

    def fn(row, line, email, key):
        word = row[kind].strip().lower() or "regular"
        status, tier = _BUTTONDOWN.get(word, ("pending", "free"))
        created_at, confirmed_at, full, meta = _dt(row[created]), _dt(row[subscribed]), row[name].strip(), row[metadata]
        if not full and "name" in meta:  # metadata is a Python dict's repr
            parts = {field: a or b for field, a, b in _BD_NAME.findall(meta)}
            full = parts.get("name", "").strip() or _name(parts.get("first_name", ""), parts.get("last_name", ""))
        return _new(Row, (line, email, key, status, tier, full, (row[utm].strip() or row[referrer].strip())[:100],
                          created_at, confirmed_at, _dt(row[unsubscribed]), confirmed_at or created_at,
                          _ip(row[ip]), "" if word in ("regular", "premium", "gifted") else word, "", "", ""))
    return fn


_BEEHIIV = {"active": "active", "inactive": "unsubscribed", "pending": "pending", "validating": "pending",
            "needs_attention": "pending", "invalid": "bounced"}


def _beehiiv(col, cols):
    state, level, stripe, created, from_substack, ended, first, last, name, source = map(col, (
        "status", "tier|subscription_tier", "stripe_customer_id", "created_at", "subscription date (substack)",
        "unsubscribed_at", "first name|first_name", "last name|last_name", "name",
        "utm_source|utm source|referring_site|referrer"))

    def fn(row, line, email, key):
        word = row[state].strip().lower()
        status = _BEEHIIV.get(word, "pending") if word else "active"
        note = "" if status == "active" else word
        if row[ended].strip() and status in ("active", "pending"):  # unsubscribed_at wins over the status
            status, note = "unsubscribed", "unsubscribed"
        tier = "free" if row[level].strip().lower() in ("", "free") else "paid" if row[stripe].strip() else "comped"
        return _new(Row, (line, email, key, status, tier, _name(row[first], row[last]) or row[name].strip(),
                          row[source].strip()[:100], _dt(row[from_substack]) or _dt(row[created]), None,
                          _dt(row[ended]), None, None, note, "", "", ""))
    return fn


def _ownedaudience(col, cols):
    _, name, state, level, source, created, confirmed, ended, form, text, consent, ip, agent = map(col, OWN_HEADER)

    def fn(row, line, email, key):
        status, tier, note = row[state].strip().lower(), row[level].strip().lower(), ""
        if status not in STATUSES:
            status, note = "pending", f"unknown status {row[state].strip()[:40]!r}"
        return _new(Row, (line, email, key, status, tier if tier in TIERS else "free", row[name].strip(),
                          row[source].strip()[:100], _dt(row[created]), _dt(row[confirmed]), _dt(row[ended]),
                          _dt(row[consent]), _ip(row[ip]), note, row[form].strip()[:100], row[text],
                          row[agent].strip()[:500]))
    return fn


_BUILDERS = {"substack": _substack, "substack_dashboard": _substack_dashboard, "mailchimp": _mailchimp,
             "ghost": _ghost, "kit": _kit, "buttondown": _buttondown, "beehiiv": _beehiiv,
             "ownedaudience": _ownedaudience}
