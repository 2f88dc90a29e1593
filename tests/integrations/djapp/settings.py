"""Django settings for the integration tests: SQLite in a temp dir, the sealog app and middleware."""

from __future__ import annotations

import tempfile
from pathlib import Path

STATE = Path(tempfile.mkdtemp(prefix="sealog-django-"))
"""Django's own database lives here; tests scan it (with the audit files) for leaked passwords."""

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "tests.integrations.djapp.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
    "django.contrib.messages", "sealog.integrations.django", "tests.integrations.djapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "sealog.integrations.django.AuditMiddleware",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(STATE / "app.db"),
                         "ATOMIC_REQUESTS": True}}
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                       "django.contrib.auth.context_processors.auth",
                                       "django.contrib.messages.context_processors.messages"]},
}]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; the hash is not the password
LOGIN_URL = "/login/"
SEALOG: dict[str, object] = {}  # each test sets its own with override_settings
