"""``djserve``: serve, config, check, command; any other command is exec'd unchanged.

Like the official images' entrypoints, ``docker run IMAGE python manage.py migrate`` runs exactly that,
and pays for no import of uvicorn or Django first: the commands import what they need themselves. It
gets every ``<VAR>_FILE`` expanded as ``serve`` does (``djserve.config.envfiles``), so a migration Job
reads ``DATABASE_URL`` from the same secret file as the server.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any


def serve(args: Sequence[str]) -> None:
    # The validating child, the preloaded process and the workers are all forked from this process: as
    # Python's gc documentation advises for fork without exec, nothing is collected until each process has
    # imported what it needs. Collections during the imports cost 45 ms of CPU at start (bench/findings.md);
    # each process enables them where its own life begins.
    gc.disable()
    from djserve import logs, preflight, prestart
    from djserve.serve import launch

    try:
        with prestart.stoppable():
            ready, preloaded = preflight.in_child(args)
        logs.configure(ready.values["log_format"])
        prestart.run(ready.values)
    except prestart.StepFailed as failure:
        prestart.log.error("%s", failure)
        sys.exit(failure.code)
    except prestart.Terminated:
        prestart.log.info("stopped during prestart")
        sys.exit(128 + 15)
    launch.run(ready, preloaded)


def _shown(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def config(args: Sequence[str]) -> None:
    from djserve.preflight import resolved

    as_json = "--json" in args
    kit = resolved([a for a in args if a != "--json"], with_app=False)
    shown = {name: {"value": _shown(kit.shown(name)), "source": e.source} for name, e in kit.values.items()}
    if as_json:
        print(json.dumps(shown, indent=2, default=str))
        return
    width = max(map(len, shown))
    for name, entry in shown.items():
        print(f"{name:<{width}}  {json.dumps(entry['value'], default=str):<24}  {entry['source']}")


def check(args: Sequence[str]) -> None:
    from djserve.preflight import resolved

    resolved(args, with_app=True)
    print("configuration OK")


def print_command(args: Sequence[str]) -> None:
    """The line on stdout, as it always was; what it does not do on stderr, one ``#`` line each."""
    from djserve.config.command import not_in_the_line, render
    from djserve.preflight import resolved

    kit = resolved(args, with_app=False)
    print(render(kit))
    for missing in not_in_the_line(kit):
        print(f"# not in this line: {missing}", file=sys.stderr)


COMMANDS: dict[str, Callable[[Sequence[str]], None]] = {
    "serve": serve,
    "config": config,
    "check": check,
    "command": print_command,
}


def _expand_files() -> None:
    """``X_FILE`` becomes ``X`` for a pass-through command, with serve's exclusions; exit 78 on a problem."""
    from djserve import preflight
    from djserve.config import envfiles

    expanded = envfiles.expand(os.environ)
    if expanded.problems:
        preflight.fail(expanded.problems, expanded)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        args.insert(0, "serve")
    name, rest = args[0], args[1:]
    if name in COMMANDS:
        COMMANDS[name](rest)
        return
    _expand_files()
    try:
        os.execvp(name, args)
    except OSError as error:
        print(f"djserve: cannot run {name!r}: {error.strerror}", file=sys.stderr)
        sys.exit(127 if isinstance(error, FileNotFoundError) else 126)
