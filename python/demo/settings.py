"""Settings of the demo project, all from the environment (see README.md), production-safe by default."""

import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from demo import env

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env.flag("DJANGO_DEBUG")

SECRET_KEY = env.text("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not (DEBUG or env.flag("DJANGO_EPHEMERAL_SECRET_KEY")):
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is not set. Set it, or set "
            "DJANGO_EPHEMERAL_SECRET_KEY=1 to use a random key per process."
        )
    # A key per process is safe here because the demo signs nothing that must outlive a process or
    # cross to another worker (no sessions, no signed cookies, no password resets).
    SECRET_KEY = secrets.token_urlsafe(50)

ALLOWED_HOSTS = env.items("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

INSTALLED_APPS = [
    # auth and contenttypes give `manage.py migrate` real migrations to apply, as in any project.
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo.urls"
ASGI_APPLICATION = "demo.asgi.application"
WSGI_APPLICATION = "demo.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

# PostgreSQL when DATABASE_URL is set; otherwise SQLite, so that `docker run` of the demo needs
# nothing. The image's root file system is read-only: the SQLite file and collected static files
# default to /tmp, which the container mounts as a tmpfs. Point them at a volume to keep them.
DATABASE_URL = env.text("DATABASE_URL")
DATABASES = {
    "default": (
        env.database(DATABASE_URL, conn_max_age=env.integer("DJANGO_CONN_MAX_AGE", 60), pool=env.flag("DJANGO_DB_POOL"))
        if DATABASE_URL
        else {"ENGINE": "django.db.backends.sqlite3", "NAME": env.text("DATABASE_PATH", "/tmp/db.sqlite3")}
    )
}
STATIC_URL = "static/"
STATIC_ROOT = env.text("STATIC_ROOT", "/tmp/static")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# The request scheme comes from uvicorn, which honours X-Forwarded-Proto only from trusted proxies
# (proxy_headers, forwarded_allow_ips), so Django must not trust that header itself: no
# SECURE_PROXY_SSL_HEADER.
SECURE_SSL_REDIRECT = env.flag("DJANGO_SECURE_SSL_REDIRECT")
SECURE_HSTS_SECONDS = env.integer("DJANGO_SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.flag("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS")
CSRF_COOKIE_SECURE = True

# djserve puts its text or JSON handlers on the root logger. Configuring "django" without handlers
# drops Django's own console and mail handlers, so each record propagates to root and is written once;
# no root handler is replaced and no logger disabled.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django": {"level": "INFO"}},
}

# Redis carries group messages between worker processes and containers; the in-memory layer only
# reaches clients of the same process.
REDIS_URL = env.text("REDIS_URL")
CHANNEL_LAYERS = {
    "default": (
        {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
        if REDIS_URL
        else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    )
}
