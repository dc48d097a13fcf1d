"""The benchmark's heavier project: a `wagtail start` site in the bench image (bench/Dockerfile), on SQLite.

Its pages are the ones that answer 200 without a login; `/` is Wagtail's home page, served from the
page tree in the database.
"""

from __future__ import annotations

from bench.servers import SERVERS_IMAGE

IMAGE = SERVERS_IMAGE
ENV = {"PYTHONPATH": "/opt/bench/wagtail", "DJANGO_SETTINGS_MODULE": "benchsite.settings.bench"}
HOME = "/"
PAGES = (HOME, "/admin/login/", "/admin/password_reset/", "/django-admin/login/", "/search/", "/search/?query=welcome")
NO_PRELOAD = {"DJSERVE_PRELOAD": "false"}
