"""Typed reads of environment settings.

Every variable can also be given as `<NAME>_FILE`, the path of a file holding the value, which is how
Docker and Kubernetes hand over secrets.
"""

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def text(name: str, default: str = "") -> str:
    value = os.environ.get(name)
    path = os.environ.get(f"{name}_FILE")
    if value is not None and path is not None:
        raise ImproperlyConfigured(f"{name} and {name}_FILE are both set; set only one")
    if path is not None:
        try:
            # Secret files usually end with a newline that is not part of the value.
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}: {exc.strerror}") from exc
    return default if value is None else value


def flag(name: str, *, default: bool = False) -> bool:
    value = text(name, "1" if default else "0").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}: {value!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def integer(name: str, default: int) -> int:
    value = text(name, str(default)).strip()
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: {value!r} is not a valid integer") from None


def items(name: str, default: str) -> list[str]:
    """A comma-separated list; blanks around items and empty items are dropped."""
    return [item.strip() for item in text(name, default).split(",") if item.strip()]


_POSTGRES_SCHEMES = frozenset({"postgres", "postgresql"})


def database(url: str, *, conn_max_age: int, pool: bool) -> dict[str, Any]:
    """Django's DATABASES entry for `postgres://user:password@host:port/name`.

    With `pool`, Django's own psycopg pool (Django 5.2) holds the connections, and persistent
    connections must be off: the pool, not CONN_MAX_AGE, decides how long they live.
    """
    parts = urlsplit(url)
    if parts.scheme not in _POSTGRES_SCHEMES or not parts.path.strip("/"):
        raise ImproperlyConfigured("DATABASE_URL: expected postgres://user:password@host:port/name")
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured("DATABASE_URL: the port is not a number from 0 to 65535") from None
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(port or ""),
        "CONN_MAX_AGE": 0 if pool else conn_max_age,
        "OPTIONS": {"pool": True} if pool else {},
    }
