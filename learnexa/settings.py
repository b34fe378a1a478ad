"""Learnexa settings: one module, driven by the environment.

SQLite in the data folder by default; PostgreSQL (or any database Django supports) by
setting DATABASE_URL.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.utils.csp import CSP

from learnexa.encryption import check_keys as check_encryption_keys

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str = "False") -> bool:
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes", "on")


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DATA_DIR = Path(os.environ.get("LEARNEXA_DATA_DIR", BASE_DIR / "data")).resolve()

DEBUG = envbool("LEARNEXA_DEBUG")
# A development key is fine for the demo and the tests; `check --deploy` flags it.
SECRET_KEY = os.environ.get("LEARNEXA_SECRET_KEY", "django-insecure-learnexa-development-key")
ALLOWED_HOSTS = envlist("LEARNEXA_ALLOWED_HOSTS", "127.0.0.1,localhost")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks_db",
    "learnexa.dataflow",
    "learnexa.accounts",
    "learnexa.manage_site",
    "learnexa.dynamics_crm",
    "learnexa.demo",
    "learnexa.ops",
]

MIDDLEWARE = [
    # First: each request's id (X-Request-ID, its log lines, the 500 page), and /healthz and
    # /readyz answered before anything that could refuse or redirect a probe.
    "learnexa.ops.middleware.OpsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "learnexa.urls"
WSGI_APPLICATION = "learnexa.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "learnexa" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "learnexa.manage_site.context_processors.site_banners",
                "learnexa.accounts.invitations.context",
            ],
        },
    },
]

_default_db = f"sqlite:///{DATA_DIR / 'learnexa.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(os.environ.get("DATABASE_URL", _default_db))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so two writers queue on the
    # busy timeout instead of failing with "database is locked" half-way through.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=10000;",
    }
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("LEARNEXA_TEST_DB") or None}
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
# A learner's own page; it sends site admins on to the Manage site.
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
# Set LEARNEXA_HTTPS=true where the app is served over HTTPS (production): cookies are then
# sent over HTTPS only, and browsers are told to use nothing else.
HTTPS = envbool("LEARNEXA_HTTPS")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and envbool("LEARNEXA_SSL_REDIRECT", "true")
# Probes and scrapers are not redirected to HTTPS (a redirect would not keep a token safe:
# it is sent with the first request).
SECURE_REDIRECT_EXEMPT = [r"^healthz/?$", r"^readyz/?$", r"^metrics/?$"]
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS and envbool("LEARNEXA_HSTS_PRELOAD", "true")
LEARNEXA_BEHIND_PROXY = envbool("LEARNEXA_BEHIND_PROXY")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if LEARNEXA_BEHIND_PROXY else None
# How many proxies stand in front of the app, each appending to X-Forwarded-For: the client's
# address (for the sign-in limit) is the one the outermost of them added. Used only behind one.
LEARNEXA_TRUSTED_PROXIES = int(os.environ.get("LEARNEXA_TRUSTED_PROXIES", "1"))
# Scripts and style sheets only from here, inline ones only with the page's nonce.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "style-src-attr": [CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    # Forms post here only. Chromium checks this on a post's redirects too: the page with
    # "Sign in with Microsoft" adds the authority host (dynamics_crm.views.integration).
    "form-action": [CSP.SELF],
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": [],
    }
}

# Email: printed to the console unless LEARNEXA_EMAIL_BACKEND says otherwise (the `learnexa`
# command sets learnexa.cli.StderrConsoleEmailBackend, so its standard output stays its
# result, JSON with --json, and its emails go to standard error); for SMTP set
# LEARNEXA_EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend and the LEARNEXA_SMTP_*.
MAILERS = {
    "default": {
        "BACKEND": os.environ.get(
            "LEARNEXA_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"
        ),
    }
}
if MAILERS["default"]["BACKEND"].endswith("smtp.EmailBackend"):
    MAILERS["default"]["OPTIONS"] = {
        "host": os.environ.get("LEARNEXA_SMTP_HOST", "localhost"),
        "port": int(os.environ.get("LEARNEXA_SMTP_PORT", "587")),
        "username": os.environ.get("LEARNEXA_SMTP_USER", ""),
        "password": os.environ.get("LEARNEXA_SMTP_PASSWORD", ""),
        "use_tls": envbool("LEARNEXA_SMTP_TLS", "true"),
    }
DEFAULT_FROM_EMAIL = os.environ.get("LEARNEXA_FROM_EMAIL", "Learnexa <noreply@learnexa.local>")

# --- Invitations (links by email to set a password) ---------------------------------------

# Where the site is reached, for links in emails sent outside a request (the sync's welcome
# emails); a request's own address is used when there is one.
LEARNEXA_BASE_URL = os.environ.get("LEARNEXA_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# How long an emailed link to set a password works; once used, it works no more.
LEARNEXA_INVITATION_DAYS = int(os.environ.get("LEARNEXA_INVITATION_DAYS", "7"))
PASSWORD_RESET_TIMEOUT = LEARNEXA_INVITATION_DAYS * 24 * 3600
# A person is sent at most one link in this long, however often it is asked for (an admin's
# "Send the invitation again" is not held back).
LEARNEXA_INVITATION_RESEND_SECONDS = int(
    os.environ.get("LEARNEXA_INVITATION_RESEND_SECONDS", "300")
)

# --- Dynamics 365 integration -------------------------------------------------------------

# Fernet keys, comma-separated, newest first. The first encrypts; all decrypt, so a key can
# be rotated in without losing the secrets stored under the old one.
LEARNEXA_ENCRYPTION_KEYS = envlist("LEARNEXA_ENCRYPTION_KEYS")
# A bad key stops every process at start with the key's position, rather than at the first
# secret a sync or a page reads.
check_encryption_keys(LEARNEXA_ENCRYPTION_KEYS)
# Extra certificate authorities trusted for the Dynamics and authority hosts (a PEM file).
LEARNEXA_DYNAMICS_CA_BUNDLE = os.environ.get("LEARNEXA_DYNAMICS_CA_BUNDLE", "")
# Hosts, beyond Microsoft's cloud domains, that an organization URI or authority host may
# use. Empty in production; the simulator's host in the demo and the tests.
LEARNEXA_DYNAMICS_ALLOWED_HOSTS = envlist("LEARNEXA_DYNAMICS_ALLOWED_HOSTS")
# Beside the demo, the `learnexa` command fills the two above from the demo's record in the
# data folder (learnexa.demo.state_file), and this with the simulator's address once that
# demo has stopped: a sync against it then fails at once, saying so.
LEARNEXA_DEMO_SIMULATOR_STOPPED = ""
# How long a sync may hold its company's lease without renewing it before another worker
# may take over (the worker renews it after every page).
LEARNEXA_SYNC_LEASE_SECONDS = int(os.environ.get("LEARNEXA_SYNC_LEASE_SECONDS", "300"))
# A background sync reads for at most this long at a time, then lets the queue's other
# companies go first and carries on from its checkpoint (0: no limit).
LEARNEXA_SYNC_SLICE_SECONDS = float(os.environ.get("LEARNEXA_SYNC_SLICE_SECONDS", "60"))
# Pages that come in faster than they are written share a transaction for up to this long
# (see sync.apply.PageTransactions): fewer commits, at the price of redoing that much on a crash.
LEARNEXA_SYNC_TRANSACTION_SECONDS = float(os.environ.get("LEARNEXA_SYNC_TRANSACTION_SECONDS", "1"))
LEARNEXA_DYNAMICS_PAGE_SIZE = int(os.environ.get("LEARNEXA_DYNAMICS_PAGE_SIZE", "5000"))
LEARNEXA_DYNAMICS_TIMEOUT = float(os.environ.get("LEARNEXA_DYNAMICS_TIMEOUT", "60"))
# How long one run may spend waiting out throttling (429 + Retry-After) before it gives up
# and is retried later; and the first pause before retrying a 5xx or network error.
LEARNEXA_DYNAMICS_MAX_THROTTLE_WAIT = float(
    os.environ.get("LEARNEXA_DYNAMICS_MAX_THROTTLE_WAIT", "300")
)
LEARNEXA_DYNAMICS_BACKOFF_SECONDS = float(os.environ.get("LEARNEXA_DYNAMICS_BACKOFF_SECONDS", "1"))
# --- Operations (learnexa.ops) ------------------------------------------------------------

# Logs: readable text by default; LEARNEXA_LOG_FORMAT=json prints one JSON object per line
# (time, level, logger, message, exception, and the context: run and company during a sync,
# request_id during a request).
LEARNEXA_LOG_FORMAT = os.environ.get("LEARNEXA_LOG_FORMAT", "text").strip().lower()
# /metrics answers loopback clients, and scrapers presenting `Authorization: Bearer <token>`.
LEARNEXA_METRICS_TOKEN = os.environ.get("LEARNEXA_METRICS_TOKEN", "")
# Label the sync metrics with each company's slug (as many series as companies).
LEARNEXA_METRICS_PER_COMPANY = envbool("LEARNEXA_METRICS_PER_COMPANY")
# A finished run is added to the counters once it has been finished this long (by then a
# run that failed on something transient is queued again, and counted when it is done).
LEARNEXA_METRICS_SETTLE_SECONDS = float(os.environ.get("LEARNEXA_METRICS_SETTLE_SECONDS", "60"))
# How often a worker records its heartbeat; it counts as gone after three times as long.
LEARNEXA_HEARTBEAT_SECONDS = float(os.environ.get("LEARNEXA_HEARTBEAT_SECONDS", "15"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "learnexa.ops.logs.ContextFilter"}},
    "formatters": {
        "plain": {"()": "learnexa.ops.logs.TextFormatter"},
        "json": {"()": "learnexa.ops.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LEARNEXA_LOG_FORMAT == "json" else "plain",
            "filters": ["context"],
        }
    },
    "loggers": {
        "learnexa": {
            "handlers": ["console"],
            "level": os.environ.get("LEARNEXA_LOG_LEVEL", "INFO"),
        },
        # msal logs request details at DEBUG; keep it quiet so nothing secret reaches a log.
        "msal": {"handlers": ["console"], "level": "WARNING"},
        "httpx": {"handlers": ["console"], "level": "WARNING"},
        # Server errors (500s) with their tracebacks: Django's own handlers only print them
        # with DEBUG on, so in production they would reach no log at all.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        # The worker's own lines (job started, finished, failed), in the same format.
        "django_tasks_db": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.tasks": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

AUTHENTICATION_BACKENDS = ["learnexa.accounts.backends.EmailBackend"]
# Emails are unique per company (a constraint on the email ignoring case, and the company),
# not globally.
SILENCED_SYSTEM_CHECKS = ["auth.W004"]
# How long finished sync runs, with their per-user change records, are kept.
LEARNEXA_SYNC_HISTORY_DAYS = int(os.environ.get("LEARNEXA_SYNC_HISTORY_DAYS", "90"))
