"""WSGI entry point (HTTP only): djserve serves it through its WSGI bridge when DJSERVE_INTERFACE=wsgi."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
application = get_wsgi_application()
