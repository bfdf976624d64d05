"""Django settings of the stand-in store, read from STORE_* variables.

DEBUG is on because the real lab store runs with it: that is what turns a
POST without its trailing slash into CommonMiddleware's RuntimeError (500)
instead of a redirect.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR = Path(os.environ.get("STORE_DATA", "store-data")).resolve()
STORE_TOKEN = os.environ.get("STORE_TOKEN", "")
VERBOSE = os.environ.get("STORE_VERBOSE", "") == "1"
# POST faults, counted over every POST that reaches a view; 0 means never.
STORE_FAULTS = {
    name: float(os.environ.get("STORE_" + name.upper(), "0") or 0)
    for name in (
        "fail_503_every",
        "fail_502_every",
        "drop_every",
        "slow_every",
        "slow",
        "stall_every",
        "stall",
        "delay",
        "rename_every",
    )
}
POST_COUNT_FILE = DATA_DIR / "post_count"

DEBUG = True
ALLOWED_HOSTS = ["*"]
SECRET_KEY = "stand-in-store-not-secret"  # a loopback test service: no secrets
ROOT_URLCONF = "storeapp.urls"
INSTALLED_APPS = ["storeapp"]
MIDDLEWARE = [
    "storeapp.middleware.DelayMiddleware",
    "django.middleware.common.CommonMiddleware",
    "storeapp.middleware.PostFaultsMiddleware",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "store.sqlite3",
        # Threads write at once: wait for the lock rather than fail.
        "OPTIONS": {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL"},
        "CONN_MAX_AGE": None,  # one connection per server thread, closed with it
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "/media/"
USE_TZ = True

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_AUTHENTICATION_CLASSES": (
        ["storeapp.auth.SingleTokenAuthentication"] if STORE_TOKEN else []
    ),
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated"
        if STORE_TOKEN
        else "rest_framework.permissions.AllowAny"
    ],
    # No django.contrib.auth here: an unauthenticated request has user None.
    "UNAUTHENTICATED_USER": None,
}

_QUIET = {"handlers": ["null"], "propagate": False}
_LOUD = {"handlers": ["console"], "level": "INFO", "propagate": False}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "null": {"class": "logging.NullHandler"},
        "console": {"class": "logging.StreamHandler"},
    },
    # Request lines and tracebacks (the 500 of a slash-less POST is expected)
    # only with --verbose, so test output stays readable.
    "loggers": {
        "django.server": _LOUD if VERBOSE else _QUIET,
        "django.request": _LOUD if VERBOSE else _QUIET,
    },
}
