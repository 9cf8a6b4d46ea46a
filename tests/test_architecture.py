"""Imports point one way (ARCHITECTURE.md, "Apps"): an app may import only apps below it.

A lower app names a higher app's model by string ("newsletters.Newsletter") and never imports
it, so the graph has no cycles and each layer can be read, tested and replaced on its own.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Lowest first. `ownedaudience` is the wiring (settings, urls, Celery): it may import every app,
# and the apps may use only its helper modules below.
LAYERS = ["subscribers", "billing", "newsletters", "transports", "delivery", "feedback", "pages", "webhooks", "portability", "api"]
SHARED = {"ownedaudience.env", "ownedaudience.links", "ownedaudience.scoping", "ownedaudience.throttle", "ownedaudience.outbox"}


def imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:  # `from ownedaudience import links` is ownedaudience.links
                yield node.lineno, f"{node.module}.{alias.name}"


def app_files(app):
    return [path for path in (ROOT / app).rglob("*.py") if "migrations" not in path.parts]


def test_apps_import_only_the_apps_below_them():
    wrong = []
    for rank, app in enumerate(LAYERS):
        above = set(LAYERS[rank + 1:])
        for path in app_files(app):
            for line, module in imported_modules(path):
                top = module.split(".")[0]
                if top in above:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module} ({app} is below {top})")
                elif top == "ownedaudience" and not any(module.startswith(shared) for shared in SHARED):
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module} (the wiring, not a helper)")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_wrong_import(tmp_path):
    """The test above would catch it: an import of a higher app is found where it is written."""
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef f():\n    from newsletters.models import Issue\n")
    assert "newsletters.models.Issue" in [module for _, module in imported_modules(sample)]


def test_every_app_is_in_the_map():
    apps = {path.parent.name for path in ROOT.glob("*/apps.py")}
    assert apps == set(LAYERS), "add the app to LAYERS and to ARCHITECTURE.md"


def test_each_app_stays_small_enough_to_hold_in_your_head():
    """About 2,000 lines of Python per app (migrations aside): past that, an app is doing two jobs."""
    sizes = {app: sum(len(path.read_text().splitlines()) for path in app_files(app)) for app in LAYERS}
    assert all(lines <= 2150 for lines in sizes.values()), sizes


@pytest.mark.django_db
def test_old_admin_addresses_of_moved_models_follow_them(client, django_user_model):
    admin_user = django_user_model.objects.create_superuser("root", "root@example.org", "pw")
    client.force_login(admin_user)
    response = client.get("/admin/newsletters/delivery/?status__exact=failed")
    assert response.status_code == 301 and response["Location"] == "/admin/delivery/delivery/?status__exact=failed"
    assert client.get(response["Location"]).status_code == 200
    assert client.get("/admin/newsletters/outboxmessage/7/change/")["Location"] == "/admin/delivery/outboxmessage/7/change/"
