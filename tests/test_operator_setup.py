"""What an operator meets first: `make run`'s setup, create_newsletter, and production settings."""

import sqlite3
import subprocess
import sys

from .servers import ROOT, project_env

PRODUCTION = {
    "SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "SITE_URL": "https://news.example.org",
    "DATABASE_URL": "postgres://app@db.invalid:5432/app",
    "REDIS_URL": "redis://redis.invalid:6379/0",
    "DEBUG": "",
}


def run(args, env, **kw):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, **kw)


def test_make_run_setup_works_on_an_empty_sqlite_database(tmp_path):
    env = project_env(VAR_DIR=tmp_path, DATABASE_URL="", REDIS_URL="", DEBUG="true", SECRET_KEY="")
    result = run(["scripts/dev.py", "--setup-only"], env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "Created newsletter 'demo'" in result.stdout
    assert "Creator login: creator@example.com" in result.stdout
    password = result.stdout.split("Password:", 1)[1].split()[0]
    assert len(password) >= 12

    database = sqlite3.connect(tmp_path / "ownedaudience.sqlite3")
    assert database.execute("select slug, name from newsletters_newsletter").fetchall() == [
        ("demo", "Demo Newsletter")
    ]
    assert database.execute("select is_staff from auth_user where username='creator@example.com'").fetchone() == (1,)

    # A second run finds what the first made and prints a fresh password that works.
    again = run(["scripts/dev.py", "--setup-only"], env, timeout=180)
    assert again.returncode == 0, again.stderr
    assert "Found newsletter 'demo'" in again.stdout


def test_create_newsletter_refuses_a_bad_owner_address(tmp_path):
    env = project_env(VAR_DIR=tmp_path, DATABASE_URL="", DEBUG="true", SECRET_KEY="")
    run(["manage.py", "migrate", "-v", "0"], env, timeout=180)
    result = run(["manage.py", "create_newsletter", "zine", "--name", "Zine", "--owner", "not-an-address"], env)
    assert result.returncode != 0
    assert "valid email" in result.stderr


def test_production_settings_pass_the_deploy_check():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], project_env(**PRODUCTION))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = run(["manage.py", "check"], project_env(**{**PRODUCTION, "SECRET_KEY": ""}))
    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr


def test_debug_is_off_unless_asked_for():
    code = "from django.conf import settings; print(settings.DEBUG, settings.SESSION_COOKIE_SECURE, settings.SECURE_HSTS_SECONDS)"
    result = run(["-c", f"import django; django.setup(); {code}"], project_env(**PRODUCTION))
    assert result.stdout.split() == ["False", "True", "31536000"], result.stderr
