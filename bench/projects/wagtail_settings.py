"""Settings of the `wagtail start` project in the benchmark image, installed as `benchsite/settings/bench.py`.

The SQLite database is migrated at build time and stays in the image: the pages the benchmark asks
for only read it, and SQLite opens a file the user cannot write read-only, so the containers keep
their read-only root. A request that wrote would fail, and count as a failed request.
"""

from .base import *  # noqa: F403

DEBUG = False
# The benchmark signs nothing that outlives a container.
SECRET_KEY = "bench-only-not-a-secret"
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
# The pages are measured, not their assets: without collectstatic, plain storage keeps `{% static %}`
# from asking for a manifest.
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
