"""Settings of the service, read from ``KARBOR_*`` environment variables.

The defaults are the embedded shape (SQLite, a local-file bank and a Celery broker on
the file system, all under ``KARBOR_DATA_DIR``); the distributed shape is selected by
setting ``KARBOR_DATABASE_URL``, ``KARBOR_BROKER_URL`` and S3 providers. Every variable
is listed in the README.
"""
from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from karbor_site.env import env_bool, env_int, env_list, env_str
from karbor_site.secret_key import distributed_shape_reason, resolve_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

DATA_DIR = Path(env_str("KARBOR_DATA_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("KARBOR_DEBUG", False)

# An embedded install keeps a generated key in its data dir so sessions survive restarts; the
# distributed shape (a networked database or broker) refuses to start without KARBOR_SECRET_KEY.
SECRET_KEY = resolve_secret_key(
    configured=env_str("KARBOR_SECRET_KEY"),
    data_dir=DATA_DIR,
    distributed_reason=distributed_shape_reason(
        database_url=env_str("KARBOR_DATABASE_URL"), broker_url=env_str("KARBOR_BROKER_URL")
    ),
    required=not DEBUG and env_bool("KARBOR_REQUIRE_SECRET_KEY", False),
)

ALLOWED_HOSTS = env_list("KARBOR_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("KARBOR_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "django_celery_beat",
    "karbor_site.tenancy",
    "operations",
    "providers",
    "plans",
    "protection",
    "restores",
    "triggers",
]

MIDDLEWARE = [
    "karbor_site.api.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "karbor_site.urls"
WSGI_APPLICATION = "karbor_site.wsgi.application"
# Karbor's paths are served with and without a trailing slash, so no redirects.
APPEND_SLASH = False

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
    "default": dj_database_url.parse(
        env_str("KARBOR_DATABASE_URL", f"sqlite:///{DATA_DIR / 'karbor.sqlite3'}"),
        conn_max_age=env_int("KARBOR_DATABASE_CONN_MAX_AGE", 0, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Worker, beat and API share the file: wait for the write lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("KARBOR_STATIC_ROOT", str(DATA_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Lets `make run` serve the admin's and the browsable API's assets without collectstatic.
WHITENOISE_USE_FINDERS = True

# --- security (check --deploy clean when KARBOR_SECURE=true behind TLS) -------------
SECURE = env_bool("KARBOR_SECURE", False)
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_SSL_REDIRECT = env_bool("KARBOR_SSL_REDIRECT", SECURE)
SECURE_HSTS_SECONDS = env_int("KARBOR_HSTS_SECONDS", 31536000 if SECURE else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE
SECURE_HSTS_PRELOAD = SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
if env_bool("KARBOR_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

# --- REST framework ----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "karbor_site.tenancy.authentication.KarborTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "karbor_site.api.renderers.KarborJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "karbor_site.api.exceptions.karbor_exception_handler",
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%S.%f",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Karbor on Django — data protection API",
    "DESCRIPTION": "OpenStack Karbor v1 compatible application data-protection API.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "XAuthToken": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"},
        }
    },
    "SECURITY": [{"XAuthToken": []}],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "karbor_site.api.schema.strip_trailing_slashes",
    ],
    # Several resources have a "status" with different choices; name each enum after its owner.
    "ENUM_NAME_OVERRIDES": {
        "PlanStatusEnum": "plans.models.PlanStatus",
    },
}

# --- tenancy and tokens -------------------------------------------------------------
KARBOR_TOKEN_TTL_HOURS = env_int("KARBOR_TOKEN_TTL_HOURS", 24 * 30, minimum=1)
KARBOR_MAX_LIMIT = env_int("KARBOR_MAX_LIMIT", 1000, minimum=1)

# --- providers and sources ----------------------------------------------------------
KARBOR_PROVIDER_CONFIG_DIR = Path(
    env_str("KARBOR_PROVIDER_CONFIG_DIR", str(BASE_DIR / "providers" / "providers.d"))
)
KARBOR_FS_SOURCES = env_list("KARBOR_FS_SOURCES", [], separator=os.pathsep)
KARBOR_FS_RESTORE_TARGETS = env_list("KARBOR_FS_RESTORE_TARGETS", [], separator=os.pathsep)
# Projects that may use the two above ("*" for every project); empty: none may (deny by default).
KARBOR_FS_PROJECTS = env_list("KARBOR_FS_PROJECTS", [])
KARBOR_BANK_DIR = Path(env_str("KARBOR_BANK_DIR", str(DATA_DIR / "bank")))
KARBOR_BANK_PASSPHRASE = env_str("KARBOR_BANK_PASSPHRASE")
# Threads per bank for hashing, compressing, encrypting and uploading (0 = one per core, up to 8).
KARBOR_BANK_WORKERS = env_int("KARBOR_BANK_WORKERS", 0, minimum=0)

# --- triggers -----------------------------------------------------------------------
KARBOR_TRIGGER_MIN_INTERVAL = env_int("KARBOR_TRIGGER_MIN_INTERVAL", 60, minimum=1)
KARBOR_TRIGGER_MIN_WINDOW = env_int("KARBOR_TRIGGER_MIN_WINDOW", 60, minimum=0)
KARBOR_TRIGGER_MAX_WINDOW = env_int("KARBOR_TRIGGER_MAX_WINDOW", 3600, minimum=0)

# --- Celery -------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("KARBOR_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker: queues are plain files under the data dir, so no server is needed.
    _broker_dir = DATA_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # kombu polls the queue directory (1 s by default); a listing every 0.1 s costs little and
        # takes a second of latency off every checkpoint, restore and verification.
        "polling_interval": 0.1,
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("KARBOR_TASK_SOFT_TIME_LIMIT", 6 * 3600, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("KARBOR_TASK_TIME_LIMIT", 6 * 3600 + 300, minimum=1)
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("KARBOR_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- quotas and the worker registry -------------------------------------------------
KARBOR_QUOTA_PLANS = env_int("KARBOR_QUOTA_PLANS", 50, minimum=-1)
KARBOR_QUOTA_CHECKPOINTS = env_int("KARBOR_QUOTA_CHECKPOINTS", -1, minimum=-1)
KARBOR_SERVICE_REPORT_INTERVAL = env_int("KARBOR_SERVICE_REPORT_INTERVAL", 10, minimum=1)
KARBOR_SERVICE_DOWN_TIME = env_int("KARBOR_SERVICE_DOWN_TIME", 60, minimum=2)

# --- protect / delete flows ---------------------------------------------------------
# Progress (bytes/items) is written to the checkpoint and its operation log at most this often.
KARBOR_PROGRESS_INTERVAL = env_int("KARBOR_PROGRESS_INTERVAL", 1, minimum=1)
# A running flow refreshes its row's heartbeat_at this often (keep it well under KARBOR_SERVICE_DOWN_TIME).
KARBOR_FLOW_HEARTBEAT_INTERVAL = env_int("KARBOR_FLOW_HEARTBEAT_INTERVAL", 5, minimum=1)
if KARBOR_FLOW_HEARTBEAT_INTERVAL * 2 > KARBOR_SERVICE_DOWN_TIME:
    # Otherwise the reaper would fail flows that are alive and well.
    raise ImproperlyConfigured(
        f"KARBOR_FLOW_HEARTBEAT_INTERVAL ({KARBOR_FLOW_HEARTBEAT_INTERVAL}) must be at most half of "
        f"KARBOR_SERVICE_DOWN_TIME ({KARBOR_SERVICE_DOWN_TIME})"
    )
# An operation no worker has picked up after this long is failed (its message was lost).
KARBOR_QUEUED_TIMEOUT = env_int("KARBOR_QUEUED_TIMEOUT", 6 * 3600, minimum=1)
# How often beat runs the dead-worker reaper (its entry expires after the same time).
KARBOR_REAPER_INTERVAL = env_int("KARBOR_REAPER_INTERVAL", 30, minimum=1)
# How often a scheduled run looks whether its checkpoint is done (then applies retention).
KARBOR_ENGINE_POLL_INTERVAL = env_int("KARBOR_ENGINE_POLL_INTERVAL", 5, minimum=1)
# Bank data younger than this is never swept by the GC that follows a checkpoint delete.
KARBOR_BANK_GC_GRACE_SECONDS = env_int("KARBOR_BANK_GC_GRACE_SECONDS", 3600, minimum=0)
KARBOR_BANK_GC_DELAY = env_int("KARBOR_BANK_GC_DELAY", 30, minimum=0)
