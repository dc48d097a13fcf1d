"""``djserve``: serve, config, check, command; any other command is exec'd unchanged.

Like the official images' entrypoints, ``docker run IMAGE python manage.py migrate`` runs exactly that,
and pays for no import of uvicorn or Django first: the commands import what they need themselves.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from djserve.settings import Effective, Settings

EX_CONFIG = 78  # sysexits.h: configuration error


def _hidden(line: str, values: Sequence[str]) -> str:
    """A problem line with every value read from a file blanked, wherever a message quoted it."""
    from djserve.command import REDACTED

    for value in values:
        if value:
            line = line.replace(value, REDACTED)
    return line


def _settings(args: Sequence[str], *, with_app: bool) -> Settings:
    """Resolved settings, or exit 78 listing every problem.

    ``X_FILE`` variables become ``X`` first, before Django's settings are imported (``djserve.envfiles``).
    """
    import click

    from djserve import envfiles
    from djserve.settings import load_app, resolve

    expanded = envfiles.expand(os.environ)
    try:
        settings = resolve(args, os.environ, expanded.files)
    except click.exceptions.Exit as done:  # --help
        sys.exit(done.exit_code)
    if with_app:
        load_app(settings)
    problems = expanded.problems + settings.problems
    if problems:
        secrets = sorted((os.environ[var] for var in expanded.files), key=len, reverse=True)
        for problem in problems:
            print(_hidden(str(problem), secrets), file=sys.stderr)
        sys.exit(EX_CONFIG)
    return settings


def serve(args: Sequence[str]) -> None:
    from djserve import logs, prestart, serving

    settings = _settings(args, with_app=True)
    logs.configure(settings["log_format"])
    try:
        prestart.run(settings)
    except prestart.StepFailed as failure:
        prestart.log.error("%s", failure)
        sys.exit(failure.code)
    except prestart.Terminated:
        prestart.log.info("stopped during prestart")
        sys.exit(128 + 15)
    serving.serve(settings)


def _shown(name: str, effective: Effective) -> Any:
    from djserve.command import REDACTED
    from djserve.options import SETTINGS

    value = effective.value
    if (SETTINGS[name].secret or effective.secret) and value is not None:
        return REDACTED
    return list(value) if isinstance(value, tuple) else value


def config(args: Sequence[str]) -> None:
    as_json = "--json" in args
    settings = _settings([a for a in args if a != "--json"], with_app=False)
    shown = {name: {"value": _shown(name, e), "source": e.source} for name, e in settings.values.items()}
    if as_json:
        print(json.dumps(shown, indent=2, default=str))
        return
    width = max(map(len, shown))
    for name, entry in shown.items():
        print(f"{name:<{width}}  {json.dumps(entry['value'], default=str):<24}  {entry['source']}")


def check(args: Sequence[str]) -> None:
    _settings(args, with_app=True)
    print("configuration OK")


def print_command(args: Sequence[str]) -> None:
    from djserve.command import render

    print(render(_settings(args, with_app=False)))


COMMANDS: dict[str, Callable[[Sequence[str]], None]] = {
    "serve": serve,
    "config": config,
    "check": check,
    "command": print_command,
}


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        args.insert(0, "serve")
    name, rest = args[0], args[1:]
    if name in COMMANDS:
        COMMANDS[name](rest)
        return
    try:
        os.execvp(name, args)
    except OSError as error:
        print(f"djserve: cannot run {name!r}: {error.strerror}", file=sys.stderr)
        sys.exit(127 if isinstance(error, FileNotFoundError) else 126)
