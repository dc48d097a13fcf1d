"""What the images themselves say they run: `djserve command` and `djserve config --json`, asked inside them.

Every hand-written command that claims "the preset's settings" is derived from `djserve command`, so
the benchmark never keeps a second copy of a preset. Each answer comes from a throwaway container with
the same CPU limit as the servers, because the preset's `workers = "auto"` follows the CPU limit.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.containers import DEMO_ENV, LIMITS, docker

ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Rendered:
    """`djserve command` split into what it hands the workers (environment) and the uvicorn argv."""

    env: dict[str, str]
    argv: tuple[str, ...]

    def line(self) -> str:
        return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in self.env.items()), shlex.join(self.argv)])


@functools.cache
def _ask(image: str, env: tuple[tuple[str, str], ...]) -> tuple[Rendered, dict[str, Any]]:
    """`djserve command` and `djserve config --json` from one container (the entrypoint passes `sh` through)."""
    assignments = [arg for name, value in {**DEMO_ENV, **dict(env)}.items() for arg in ("-e", f"{name}={value}")]
    script = "djserve command && djserve config --json"
    line, raw = docker("run", "--rm", *LIMITS, *assignments, image, "sh", "-c", script).split("\n", 1)
    words = shlex.split(line)
    split = next((i for i, word in enumerate(words) if not ENV_ASSIGNMENT.match(word)), len(words))
    rendered = Rendered(dict(word.split("=", 1) for word in words[:split]), tuple(words[split:]))
    resolved: dict[str, dict[str, Any]] = json.loads(raw)
    return rendered, {name: entry["value"] for name, entry in resolved.items()}


def command(image: str, env: Mapping[str, str]) -> Rendered:
    return _ask(image, tuple(sorted(env.items())))[0]


def config(image: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The resolved configuration, setting name -> value (`djserve config --json` also gives sources)."""
    return _ask(image, tuple(sorted(env.items())))[1]


def _from_kit(value: str) -> bool:
    """An import path into djserve (its app factory, its protocol classes), which bare uvicorn lacks."""
    return re.split(r"[.:]", value, maxsplit=1)[0] == "djserve"


def bare_uvicorn(image: str, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The uvicorn command `djserve command` prints for the image's preset under `env`, without djserve:
    ASGI mode, with the Django application djserve found instead of djserve's app factory."""
    env = {**(env or {}), "DJSERVE_INTERFACE": "asgi"}
    return without_kit(command(image, env), config(image, env))


def without_kit(rendered: Rendered, settings: dict[str, Any]) -> tuple[str, ...]:
    """`rendered` with `settings["app"]` for djserve's factory. An option whose value is one of djserve's
    classes (its HTTP protocols) gets the value `djserve config` reports for that setting instead, or is
    left to uvicorn's default when that is one of djserve's classes too."""
    program, *options, factory = rendered.argv
    if program != "uvicorn" or not _from_kit(factory):
        raise RuntimeError(f"`djserve command` no longer runs uvicorn on djserve's factory: {rendered.line()}")
    argv = ["uvicorn"]
    i = 0
    while i < len(options):
        option = options[i]
        has_value = i + 1 < len(options) and not options[i + 1].startswith("--")
        value = options[i + 1] if has_value else None
        i += 2 if has_value else 1
        if option == "--factory":
            continue
        if value is not None and _from_kit(value):
            plain = settings.get(option.removeprefix("--").replace("-", "_"))
            if not isinstance(plain, str) or _from_kit(plain):
                continue
            value = plain
        argv += [option] if value is None else [option, value]
    return (*argv, settings["app"])


def threads(image: str) -> int:
    """djserve's `threads`: the sync threads per worker, which the other servers get too."""
    count: int = config(image, {})["threads"]
    return count
