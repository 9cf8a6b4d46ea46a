"""Settings, read from environment variables. See README.md for each one."""

import base64
import hashlib
import re
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from .env import envbool, envfloat, envint, envlist, envstr, parse_email_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = envbool("DEBUG", False)
SECRET_KEY = envstr("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set SECRET_KEY (or DEBUG=true for local development).")
    SECRET_KEY = "insecure-local-development-key-do-not-use-in-production-0123456789"



def _run_site_url(address):
    """Where `make run` serves (RUN_ADDRESS, as runserver takes it: PORT, HOST:PORT, [V6]:PORT)."""
    host, _, port = address.strip().rpartition(":")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
    return f"http://{host}:{port or 8000}"


# Without SITE_URL, links in emails, snippets and OpenGraph tags point where `make run` serves.
SITE_URL = (envstr("SITE_URL") or _run_site_url(envstr("RUN_ADDRESS", "127.0.0.1:8000"))).rstrip("/")
_site = urlsplit(SITE_URL)
SITE_IS_HTTPS = _site.scheme == "https"
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS") or [_site.hostname or "localhost"]
if DEBUG:
    ALLOWED_HOSTS += ["127.0.0.1", "localhost", "[::1]"]
CSRF_TRUSTED_ORIGINS = [f"{_site.scheme}://{_site.netloc}"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "subscribers",
    "billing",
    "newsletters",
    "transports",
    "delivery",
    "feedback",
    "pages",
    "webhooks",
    "portability",
    "api",
    # Members' code login; after the apps, so pages/templates/account/ overrides its templates.
    "allauth",
    "allauth.account",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ownedaudience.urls"
WSGI_APPLICATION = "ownedaudience.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: PostgreSQL in production; SQLite in VAR_DIR when DATABASE_URL is unset.
DATABASE_URL = envstr("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'ownedaudience.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # `make run`: the web server, worker and beat write one file. WAL lets readers go on beside the
    # writer; IMMEDIATE takes the write lock when a transaction begins, so a writer waits its turn (the
    # busy timeout, in seconds) instead of failing with "database is locked" when a read-then-write
    # transaction (the outbox dispatcher's claim) cannot upgrade its lock.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: Celery broker and cache. Without REDIS_URL, a broker that needs no server.
REDIS_URL = envstr("REDIS_URL")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Every task finishes far inside this (see ARCHITECTURE.md, "short tasks").
        "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 3600),
        "socket_connect_timeout": 5,
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    _queue_dir = VAR_DIR / "broker"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "processed_folder": str(_queue_dir / "processed"),
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
        # Look for new messages every 0.2 s (kombu's default: 1 s).
        "polling_interval": 0.2,
    }
    # Without an event loop (this broker) the worker runs a timer thread that wakes this often; its
    # shutdown waits for the next wake-up, twice (the default, 1 s, makes Ctrl-C take seconds longer).
    CELERY_WORKER_TIMER_PRECISION = 0.1
    # Shared by the web server, worker and beat of one machine.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                          "LOCATION": str(VAR_DIR / "cache")}}
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TIMEZONE = "UTC"
# Confirmation, welcome and data emails jump the bulk queue; the dispatcher hands owed
# emails (subscribers.OwedEmail, written with each signup) to workers every second.
CELERY_TASK_ROUTES = {"subscribers.tasks.*": {"queue": "transactional"}}
CELERY_BEAT_SCHEDULE = {
    "dispatch-owed-emails": {
        "task": "subscribers.tasks.dispatch_owed_emails",
        "schedule": 1.0,
        "options": {"expires": 10},
    },
    "expire-comps": {"task": "billing.tasks.expire_comps", "schedule": 3600.0, "options": {"expires": 600}},
}

# Signup defences for the public, CSRF-exempt endpoints: "COUNT/SECONDS" per client IP
# (IPv6 by /64) and per address, counted in Redis (in-process without REDIS_URL).
SIGNUP_RATE_PER_IP = envstr("SIGNUP_RATE_PER_IP", "100/600")
SIGNUP_RATE_PER_ADDRESS = envstr("SIGNUP_RATE_PER_ADDRESS", "3/3600")
SIGNUP_BLOCKED_DOMAINS = envlist("SIGNUP_BLOCKED_DOMAINS")
# Erasure keeps a digest of the address (the suppression hash, where the law allows it) against re-imports.
ERASURE_KEEP_DIGEST = envbool("ERASURE_KEEP_DIGEST", True)
RATE_LIMIT_KEY_PREFIX = envstr("RATE_LIMIT_KEY_PREFIX", "oa:rl")
# Behind a proxy the client's address is the last hop it appended to X-Forwarded-For.
CLIENT_IP_FROM_FORWARDED_FOR = envbool("BEHIND_TLS_PROXY", False)

# Email: EMAIL_URL picks the transport; see ownedaudience/env.py for the forms.
EMAIL_URL = envstr("EMAIL_URL", "outbox://")
# SMTP connections per worker process, one message on each at a time (EMAIL_URL ?connections=N wins).
EMAIL_TRANSPORT = parse_email_url(EMAIL_URL, smtp_connections=envint("SMTP_CONNECTIONS", 8))
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", f"noreply@{_site.hostname or 'localhost'}")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# DKIM for the SMTP transport (transports/dkim.py): every message whose From domain is DKIM_DOMAIN
# or below it is signed (rsa-sha256, relaxed/relaxed) with the key published at
# SELECTOR._domainkey.DKIM_DOMAIN; `manage.py check_domain DOMAIN` prints the records.
DKIM_SELECTOR = envstr("DKIM_SELECTOR", "")
DKIM_DOMAIN = envstr("DKIM_DOMAIN", "").strip().rstrip(".").lower()
DKIM_PRIVATE_KEY = envstr("DKIM_PRIVATE_KEY", "")  # PEM text; or DKIM_PRIVATE_KEY_FILE, a path to one
DKIM_PRIVATE_KEY_FILE = envstr("DKIM_PRIVATE_KEY_FILE", "")


def _mailer(transport):
    if transport["transport"] == "outbox":
        return {"BACKEND": "delivery.outbox.OutboxBackend"}
    # SMTP, SES and discard: through the send engine's own transports, so transactional mail
    # is read the same way as bulk mail (an answer lost after DATA is "unknown", never resent).
    return {"BACKEND": "transports.backend.TransportEmailBackend"}


# "transactional" carries confirmations, login codes and receipts; "default" is Django's own.
MAILERS = {"default": _mailer(EMAIL_TRANSPORT), "transactional": _mailer(EMAIL_TRANSPORT)}

# Stripe (paid memberships, billing/): the installation's account. Without a secret key the
# billing pages say billing is not set up and nothing else changes. A newsletter may use its
# own account instead (keys entered in the admin, stored encrypted with a key derived from
# SECRET_KEY, or from BILLING_ENCRYPTION_KEY when set, so rotating SECRET_KEY need not lose them).
STRIPE_SECRET_KEY = envstr("STRIPE_SECRET_KEY", "")
STRIPE_PUBLISHABLE_KEY = envstr("STRIPE_PUBLISHABLE_KEY", "")
STRIPE_WEBHOOK_SECRET = envstr("STRIPE_WEBHOOK_SECRET", "")
# Another address for Stripe's API (a test stand-in, a proxy); empty: Stripe's own.
STRIPE_API_BASE = envstr("STRIPE_API_BASE", "")
# A webhook signed longer ago than this is refused (Stripe's own default tolerance).
STRIPE_WEBHOOK_TOLERANCE = envint("STRIPE_WEBHOOK_TOLERANCE", 300)
BILLING_ENCRYPTION_KEY = envstr("BILLING_ENCRYPTION_KEY", "")
# Where the join form and the member's "Manage billing" button send the browser (a redirect after a
# form post obeys the page's form-action): Stripe's Checkout and Customer Portal, or the stand-in.
STRIPE_PAGE_ORIGINS = envlist("STRIPE_PAGE_ORIGINS") or ["https://checkout.stripe.com", "https://billing.stripe.com"]
if STRIPE_API_BASE:
    STRIPE_PAGE_ORIGINS.append("{0.scheme}://{0.netloc}".format(urlsplit(STRIPE_API_BASE)))

# The send engine (see ARCHITECTURE.md). 0 means "pick for me".
SES_MAX_IN_FLIGHT = envint("SES_MAX_IN_FLIGHT", 8)  # SES calls at once per worker process
# An SES-compatible endpoint (a test double, a proxy); boto3's own variable is AWS_ENDPOINT_URL_SESV2.
AWS_ENDPOINT_URL_SES = envstr("AWS_ENDPOINT_URL_SES", "")
SEND_RATE = envfloat("SEND_RATE", 0)  # messages/s for the whole account; 0: SES's max rate, or none
SEND_CHAINS = envint("SEND_CHAINS", 4)  # batches of one issue worked on at once
SEND_BATCH_SIZE = envint("SEND_BATCH_SIZE", 500)
SEND_BATCH_SECONDS = envint("SEND_BATCH_SECONDS", 20)  # at a low rate, batches shrink to about this long
SEND_WINDOW = envint("SEND_WINDOW", 0)  # messages handed to the transport at once; 0: the transport's own
# A batch's lease, renewed with every hand-over; a dead worker's rows come back within about this.
SEND_LEASE_SECONDS = envfloat("SEND_LEASE_SECONDS", 20)
# A row retried for transient errors fails once this long has passed since its first failure.
SEND_RETRY_FOR_SECONDS = envfloat("SEND_RETRY_FOR_SECONDS", 72 * 3600)
SEND_RETRY_BASE_SECONDS = envfloat("SEND_RETRY_BASE_SECONDS", 30)
SEND_RETRY_MAX_SECONDS = envfloat("SEND_RETRY_MAX_SECONDS", 3600)
# Throttling (SMTP 421/451/454, SES throttling, an unreachable relay) pauses every send for a
# delay that doubles from BASE to MAX while it goes on, and is forgotten after a calm spell.
SEND_PAUSE_BASE_SECONDS = envfloat("SEND_PAUSE_BASE_SECONDS", 5)
SEND_PAUSE_MAX_SECONDS = envfloat("SEND_PAUSE_MAX_SECONDS", 300)
# How long a batch waits for the shared rate bucket (Redis) before it gives its rows back.
SEND_RATE_PATIENCE_SECONDS = envfloat("SEND_RATE_PATIENCE_SECONDS", 10)
SEND_WATCHDOG_SECONDS = envfloat("SEND_WATCHDOG_SECONDS", 5)
SEND_SCHEDULE_CHECK_SECONDS = envfloat("SEND_SCHEDULE_CHECK_SECONDS", 15)
CELERY_TASK_ROUTES["newsletters.tasks.send_batch"] = {"queue": "bulk"}
CELERY_BEAT_SCHEDULE.update({
    "send-watchdog": {"task": "newsletters.tasks.send_watchdog", "schedule": SEND_WATCHDOG_SECONDS},
    "send-scheduled-issues": {
        "task": "newsletters.tasks.send_scheduled_issues", "schedule": SEND_SCHEDULE_CHECK_SECONDS,
    },
})

# Outgoing webhooks (webhooks/): rows in the database, handed to workers by beat.
CELERY_BEAT_SCHEDULE["dispatch-webhooks"] = {
    "task": "webhooks.tasks.dispatch_webhooks", "schedule": 2.0, "options": {"expires": 10},
}
CELERY_TASK_ROUTES["webhooks.tasks.*"] = {"queue": "default"}
# Seconds a webhook POST may wait for the connection and for each read of the answer.
WEBHOOK_TIMEOUT_SECONDS = envfloat("WEBHOOK_TIMEOUT_SECONDS", 10)
# The first retry of a failed webhook waits this long; each next one twice as long…
WEBHOOK_RETRY_BASE_SECONDS = envfloat("WEBHOOK_RETRY_BASE_SECONDS", 30)
# …up to this long.
WEBHOOK_RETRY_MAX_SECONDS = envfloat("WEBHOOK_RETRY_MAX_SECONDS", 3600)
# A webhook still failing this long after its first failure is marked failed (the admin can send it again).
WEBHOOK_RETRY_FOR_SECONDS = envfloat("WEBHOOK_RETRY_FOR_SECONDS", 72 * 3600)
# Endpoints on loopback, private or link-local addresses are refused (SSRF) unless this is true.
WEBHOOK_ALLOW_PRIVATE_URLS = envbool("WEBHOOK_ALLOW_PRIVATE_URLS", False)
# How long a process trusts its list of active endpoints (an endpoint saved elsewhere waits this long).
WEBHOOK_ENDPOINT_CACHE_SECONDS = envfloat("WEBHOOK_ENDPOINT_CACHE_SECONDS", 5)

# Feedback from Amazon SES over SNS (feedback/): SNS posts to /feedback/ses/. Only messages from these
# topics (comma-separated ARNs) are taken; any other topic is answered 403 and changes nothing.
SES_SNS_TOPIC_ARNS = envlist("SES_SNS_TOPIC_ARNS")
# An SNS message older than this (or more than five minutes in the future) is refused as stale.
SNS_MAX_AGE_SECONDS = envint("SNS_MAX_AGE_SECONDS", 3600)
# An address is suppressed at this many transient (or undetermined) bounces within the window.
SES_TRANSIENT_BOUNCE_LIMIT = envint("SES_TRANSIENT_BOUNCE_LIMIT", 3)
SES_TRANSIENT_BOUNCE_WINDOW_DAYS = envint("SES_TRANSIENT_BOUNCE_WINDOW_DAYS", 7)
# The guard on a send (feedback/guard.py): once this many of an issue's messages have gone out, more
# hard bounces or complaints than these shares pause it, with the figures.
SEND_GUARD_SAMPLE = envint("SEND_GUARD_SAMPLE", 1000)
SEND_GUARD_BOUNCE_RATE = envfloat("SEND_GUARD_BOUNCE_RATE", 0.05)
SEND_GUARD_COMPLAINT_RATE = envfloat("SEND_GUARD_COMPLAINT_RATE", 0.001)
SEND_GUARD_EVERY_SECONDS = envfloat("SEND_GUARD_EVERY_SECONDS", 5)  # per issue, at most once in this
# For tests only: "host:port" to connect to instead of the SNS host (the certificate is still checked
# for the SNS host's name), and a CA file trusted instead of the system's. Leave both empty.
SNS_CERTIFICATE_CONNECT_TO = envstr("SNS_CERTIFICATE_CONNECT_TO")
SNS_CA_BUNDLE = envstr("SNS_CA_BUNDLE")
# Bounces from an SMTP relay (feedback/relay.py): its webhook posts Postmark or Mailgun JSON to
# /feedback/relay/<RELAY_WEBHOOK_SECRET>/. Empty: the endpoint answers 404.
RELAY_WEBHOOK_SECRET = envstr("RELAY_WEBHOOK_SECRET")
# The mailbox bounces (DSNs) and mailto: unsubscribe requests arrive in (feedback/mailbox.py), read
# every minute by beat: imaps://user:password@host:993/INBOX, or imap://…:143/INBOX?starttls=1.
BOUNCE_IMAP_URL = envstr("BOUNCE_IMAP_URL")
if BOUNCE_IMAP_URL:
    CELERY_BEAT_SCHEDULE["read-bounce-mailbox"] = {
        "task": "feedback.tasks.read_bounce_mailbox", "schedule": 60.0, "options": {"expires": 50},
    }

# Members log in at /account/login/ with a code emailed to them (django-allauth, pages/members.py); no
# password, no signup (billing makes members' logins). Creators keep their password at /admin/.
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "member_account"
ACCOUNT_ADAPTER = "pages.members.MemberAccountAdapter"
ACCOUNT_FORMS = {"request_login_code": "pages.members.MemberLoginCodeForm"}
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*"]
ACCOUNT_LOGIN_BY_CODE_ENABLED = True
ACCOUNT_LOGIN_BY_CODE_TIMEOUT = 180  # seconds a code lives (allauth's default)
ACCOUNT_LOGIN_BY_CODE_MAX_ATTEMPTS = 3  # wrong codes before it is dead (allauth's default)
# An unknown address gets the same page as a member's and no email at all.
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS = False
ACCOUNT_EMAIL_SUBJECT_PREFIX = ""
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
# Code requests per client IP (IPv6 by /64) and per address, counted in the cache (Redis).
ACCOUNT_RATE_LIMITS = {"request_login_code": envstr("LOGIN_CODE_RATE_LIMITS", "20/10m/ip,3/10m/key")}
ALLAUTH_TRUSTED_PROXY_COUNT = 1 if CLIENT_IP_FROM_FORWARDED_FOR else 0  # the hop our own proxy appended
# The code email goes on the transactional queue; the worker imports its task (not in a tasks.py).
CELERY_IMPORTS = ["pages.members"]
CELERY_TASK_ROUTES["pages.members.*"] = {"queue": "transactional"}

# Security: safe by default, stricter still when SITE_URL is https.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = SITE_IS_HTTPS
CSRF_COOKIE_SECURE = SITE_IS_HTTPS
SECURE_SSL_REDIRECT = SITE_IS_HTTPS and envbool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000 if SITE_IS_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
# Subdomain HSTS and preloading bind every other host of the operator's domain, so
# they are opt-in above and their reminders are not shown by `check --deploy`.
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]
if envbool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# Content-Security-Policy, by Django's middleware: nothing loads or runs unless named here. Public
# pages (bio page, archive, issues, confirm, unsubscribe, preferences, signup answers) carry their few
# styles, and the embed its script, inline: the policy names those exact blocks by hash, so every
# answer is the same bytes (the signup answers must not differ) and the pages cache. No style= or
# on…= attributes anywhere. Pictures are the creator's avatar and the images of issues.


def _inline_hashes(tag, *templates):
    """'sha256-…' sources for the <tag> blocks of these templates; such a block holds no template code."""
    sources = []
    for template in templates:
        text = (BASE_DIR / template).read_text(encoding="utf-8")
        for block in re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL):
            if "{{" in block or "{%" in block:
                raise ImproperlyConfigured(f"An inline <{tag}> in {template} holds template code: give it a nonce.")
            digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
            sources.append(f"'sha256-{digest}'")
    return sources


_CARD_PAGE = "subscribers/templates/subscribers/page.html"  # the base of them all but archive and issue pages
SECURE_CSP = {
    "default-src": [CSP.NONE],
    "style-src": _inline_hashes(
        "style", _CARD_PAGE, "pages/templates/pages/page.html",
        "pages/templates/pages/base.html",
    ),
    "img-src": [CSP.SELF, "https:", "http:"],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
}
# The pages whose forms lead to Stripe (the bio page's plans, the member's "Manage billing"): a
# redirect after a form post obeys form-action, so Stripe's Checkout and Portal are named there only.
CSP_TO_STRIPE = {**SECURE_CSP, "form-action": [CSP.SELF, *STRIPE_PAGE_ORIGINS]}
# /<slug>/embed sits in an iframe on any site, and its script posts the form to this site.
_EMBED_PAGE = "pages/templates/pages/embed.html"
CSP_EMBED = {
    **SECURE_CSP,
    "style-src": _inline_hashes("style", _CARD_PAGE, _EMBED_PAGE),
    "script-src": _inline_hashes("script", _EMBED_PAGE),
    "connect-src": [CSP.SELF],
    "frame-ancestors": ["*"],
}
# The admin (ownedaudience/urls.py): Django's own static files and the inline blocks that carry the
# response's nonce ({% csp_nonce_attr %}), the issue page's progress poll, the dev outbox's preview.
CSP_ADMIN = {
    "default-src": [CSP.NONE],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "frame-src": [CSP.SELF],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
}
# A dev outbox message's HTML in that frame: an email's inline styles, nothing that runs, and
# links that open in a new tab.
CSP_OUTBOX_PREVIEW = {
    "default-src": [CSP.NONE],
    "style-src": [CSP.UNSAFE_INLINE],
    "img-src": ["https:", "http:", "data:"],
    "form-action": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.SELF],
    "sandbox": ["allow-popups", "allow-popups-to-escape-sandbox"],
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("vi", "Tiếng Việt")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Uploaded import files wait here for the worker (share it between web and workers).
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"

STATIC_URL = "/static/"
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
}
