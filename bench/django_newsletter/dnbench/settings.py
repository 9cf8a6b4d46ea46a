"""A minimal Django project for django-newsletter, configured for a send benchmark.

Everything that varies comes from the environment, set by ../run.py:
DN_BENCH_DB_NAME, DN_BENCH_DB_HOST, DN_BENCH_DB_PORT, DN_BENCH_DB_USER, DN_BENCH_DB_PASSWORD,
DN_BENCH_SMTP_HOST, DN_BENCH_SMTP_PORT.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "benchmark-only-not-secret"
DEBUG = False  # as in production: no query log kept in memory
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "sorl.thumbnail",
    "newsletter",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "dnbench.urls"
SITE_ID = 1

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DN_BENCH_DB_NAME", "oa_bench_dn"),
        "HOST": os.environ.get("DN_BENCH_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DN_BENCH_DB_PORT", "5432"),
        "USER": os.environ.get("DN_BENCH_DB_USER", "postgres"),
        "PASSWORD": os.environ.get("DN_BENCH_DB_PASSWORD", ""),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
STATIC_URL = "static/"
MEDIA_URL = "media/"
MEDIA_ROOT = BASE_DIR / "media"

# Mail: Django's SMTP backend, straight at the sink; no TLS, no login.
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = os.environ.get("DN_BENCH_SMTP_HOST", "127.0.0.1")
EMAIL_PORT = int(os.environ.get("DN_BENCH_SMTP_PORT", "25"))
EMAIL_USE_TLS = False
EMAIL_USE_SSL = False
EMAIL_TIMEOUT = 30
DEFAULT_FROM_EMAIL = "news@bench.example.org"

# django-newsletter: every delay and throttle off, so only its own work is measured.
NEWSLETTER_EMAIL_DELAY = 0  # seconds slept before each message
NEWSLETTER_BATCH_DELAY = 0  # seconds slept after each batch
NEWSLETTER_BATCH_SIZE = 0  # 0: no batches
NEWSLETTER_THUMBNAIL = "sorl-thumbnail"
NEWSLETTER_USE_HTTPS = True
NEWSLETTER_CONFIRM_EMAIL = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"newsletter": {"handlers": ["stderr"], "level": "WARNING"}},
}
