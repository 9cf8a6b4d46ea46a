"""Every fan-facing string has its Vietnamese translation, and the committed .mo files match the .po files."""

import ast
import gettext
from pathlib import Path

import pytest

from .servers import ROOT

CATALOGS = [ROOT / f"{app}/locale/vi/LC_MESSAGES" for app in ("subscribers", "newsletters", "delivery", "pages")]


def po_entries(path):
    entries, current, key = [], None, None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("msgid "):
            current = {"msgid": ast.literal_eval(line[6:]), "msgstr": ""}
            entries.append(current)
            key = "msgid"
        elif line.startswith("msgid_plural "):
            key = None
        elif line.startswith("msgstr"):
            key = "msgstr"
            current["msgstr"] += ast.literal_eval(line.split(" ", 1)[1])
        elif line.startswith('"') and key:
            current[key] += ast.literal_eval(line)
        elif not line.strip():
            key = None
    return [entry for entry in entries if entry["msgid"]]


@pytest.mark.parametrize("catalog", CATALOGS, ids=lambda path: path.parts[-4])
def test_every_message_is_translated_and_compiled(catalog):
    entries = po_entries(catalog / "django.po")
    assert entries
    untranslated = [entry["msgid"] for entry in entries if not entry["msgstr"]]
    assert untranslated == []
    with open(catalog / "django.mo", "rb") as compiled:
        translations = gettext.GNUTranslations(compiled)
    stale = [
        entry["msgid"]
        for entry in entries
        if "%d" not in entry["msgid"] and translations.gettext(entry["msgid"]) != entry["msgstr"]
    ]
    assert stale == [], "run `manage.py compilemessages` and commit the .mo files"
