"""``djserve command``: one shell line that starts the same server with plain uvicorn."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from typing import Any

from djserve.options import SETTINGS, cli_default
from djserve.serving import handoff, uvicorn_options
from djserve.settings import Settings
from djserve.worker import FACTORY, HANDOFF

REDACTED = "<redacted>"
# uvicorn reads these from the environment when they are not given, so they are always spelled out.
ALWAYS = frozenset({"workers", "forwarded_allow_ips"})


def _flags(name: str, value: Any, *, secret: bool) -> list[str]:
    param = SETTINGS[name].param
    opt = param.opts[0]
    if getattr(param, "is_flag", False):
        if value is None:
            return []
        secondary = getattr(param, "secondary_opts", [])
        return [opt] if value else secondary[:1]
    if secret and value is not None:
        return [opt, REDACTED]
    if SETTINGS[name].multiple:
        return [part for item in value for part in (opt, str(item))]
    return [] if value is None else [opt, str(value)]


def _secret(settings: Settings, name: str) -> bool:
    """A secret setting, or any value read from a ``_FILE`` variable."""
    return SETTINGS[name].secret or settings.values[name].secret


def render(settings: Settings, environ: Mapping[str, str] = os.environ) -> str:
    args = ["--factory"]
    for name, value in uvicorn_options(settings).items():
        # An UVICORN_* variable left in the environment would otherwise win over a default.
        given = f"UVICORN_{name.upper()}" in environ
        if value != cli_default(SETTINGS[name].param) or name in ALWAYS or given:
            args += _flags(name, value, secret=_secret(settings, name))
    names = dict(HANDOFF)
    env = [
        f"{var}={REDACTED if _secret(settings, names[var]) else shlex.quote(value)}"
        for var, value in handoff(settings).items()
    ]
    return " ".join([*env, shlex.join(["uvicorn", *args, FACTORY])])
