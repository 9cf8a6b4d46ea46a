"""Test settings: the real settings, pointed at PostgreSQL and Redis on 127.0.0.1 by default.

When a server does not answer, the suite falls back (SQLite, no Redis) and the tests that
need it are skipped with a reason; under CI=true a skip of that kind fails the run instead.
"""

import os
import socket
from urllib.parse import urlsplit

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdefghijklmnop")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ownedaudience")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("EMAIL_URL", "outbox://")


def _answers(url, default_port):
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


POSTGRES_AVAILABLE = _answers(os.environ["DATABASE_URL"], 5432) if os.environ["DATABASE_URL"].startswith(
    "postgres"
) else False
REDIS_AVAILABLE = _answers(os.environ["REDIS_URL"], 6379) if os.environ["REDIS_URL"] else False
if not POSTGRES_AVAILABLE:
    os.environ["DATABASE_URL"] = "sqlite:///:memory:"
if not REDIS_AVAILABLE:
    os.environ["REDIS_URL"] = ""

from ownedaudience.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
