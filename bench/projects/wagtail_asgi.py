"""`benchsite/asgi.py`, as `django-admin startproject` writes it: `wagtail start` writes only wsgi.py, and the
bare uvicorn command needs an ASGI application to name."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings.bench")

application = get_asgi_application()
