"""The demo's settings with this package's URLconf: `DJANGO_SETTINGS_MODULE=benchleak.settings`."""

from demo.settings import *  # noqa: F403

ROOT_URLCONF = "benchleak.urls"
