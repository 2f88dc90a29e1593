"""Settings of the sealog example project (development only: DEBUG on, a throwaway secret key)."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("EXAMPLE_STATE_DIR", BASE_DIR))

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
USE_TZ = True
ROOT_URLCONF = "project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"

INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    "sealog.integrations.django",
    "notes",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "sealog.integrations.django.AuditMiddleware",  # after authentication: it reads request.user
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request", "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages"]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": STATE_DIR / "app.db",
                         "ATOMIC_REQUESTS": True}}

SEALOG = {
    "URL": os.environ.get("SEALOG_URL", f"sqlite:///{STATE_DIR / 'audit.db'}"),
    "TENANT": "demo",                          # or a dotted path to f(request) -> str
    "TRACK": ["notes.Note", "auth.User"],      # create/update/delete and bulk operations
    "TRUSTED_PROXIES": ["127.0.0.1"],          # X-Forwarded-For is read only from these peers
}
