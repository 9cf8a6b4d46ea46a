"""Tiny typed readers for settings that come from environment variables."""

import os
from urllib.parse import parse_qs, unquote, urlsplit

TRUE_WORDS = {"1", "true", "yes", "on"}


def envstr(name, default=""):
    return os.environ.get(name, default)


def envbool(name, default=False):
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in TRUE_WORDS


def envint(name, default):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def envfloat(name, default):
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def envlist(name, default=""):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def parse_email_url(url, smtp_connections=8):
    """Turn EMAIL_URL into a transport description.

    outbox://                      -> stored in the database, shown in the browser
    smtp://user:pass@host:port     -> SMTP; ?tls=starttls|ssl|none, ?timeout=seconds,
                                      ?connections=N per worker process (default smtp_connections)
    smtps://user:pass@host:port    -> SMTP over implicit TLS
    ses://REGION                   -> Amazon SES v2 (?configuration_set=NAME)
    discard://                     -> accepted and dropped (benchmarks)
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if scheme == "outbox":
        return {"transport": "outbox"}
    if scheme == "discard":
        return {"transport": "discard"}
    if scheme in ("smtp", "smtps"):
        default_tls = "ssl" if scheme == "smtps" else "none"
        return {
            "transport": "smtp",
            "host": parts.hostname or "localhost",
            "port": parts.port or (465 if scheme == "smtps" else 25),
            "username": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "tls": query.get("tls", default_tls).lower(),
            "timeout": float(query.get("timeout", 30)),
            "connections": int(query.get("connections", smtp_connections)),
        }
    if scheme == "ses":
        region = parts.hostname or query.get("region") or "us-east-1"
        return {
            "transport": "ses",
            "region": region,
            "configuration_set": query.get("configuration_set", ""),
        }
    raise ValueError(f"EMAIL_URL scheme {scheme!r} is not one of outbox, smtp, smtps, ses, discard")
