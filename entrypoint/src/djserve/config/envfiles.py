"""docker-library's ``file_env`` for every variable: ``X_FILE=/run/secrets/x`` defines ``X`` from that file.

It runs before Django is imported, so the user's settings read ``os.environ["DJANGO_SECRET_KEY"]``
whether the key was given directly or mounted as a Docker or Kubernetes secret. The file's bytes are
kept exactly, but for its trailing newlines (as the shell's ``$(< file)`` in ``file_env`` strips them).
Bytes that are not UTF-8 pass through unchanged: Python keeps them as surrogate escapes in
``os.environ`` and writes the original bytes back into the environment of every child process, which
is what the same bytes given directly as ``X`` would do. ``X_FILE`` is removed once ``X`` is defined,
as ``file_env`` does, so a child that runs djserve again does not see both.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from functools import cache

from djserve.config.model import Problem

SUFFIX = "_FILE"

# Variables whose name ends in _FILE because their value is a path with its own meaning to the program
# that reads it. Expanding them would define a variable nobody reads, holding a whole certificate bundle,
# a tool's configuration or a token that the program re-reads as it rotates; the path itself would then
# be checked as if it were a secret, and a missing optional file (a tool's config) would stop djserve.
# Configuration files and certificate bundles, by suffix: none is a secret read from the environment.
PATH_SUFFIXES = ("_CONFIG_FILE", "_CERT_FILE", "_CERTS_FILE")  # DJSERVE_CONFIG_FILE, PIP_CONFIG_FILE, SSL_CERT_FILE
PATH_VARIABLES = frozenset(
    {
        "AWS_WEB_IDENTITY_TOKEN_FILE",  # EKS pod identity: a rotating token file
        "AZURE_FEDERATED_TOKEN_FILE",  # AKS workload identity: likewise
        "AWS_SHARED_CREDENTIALS_FILE",  # the SDK's credentials file, read by the SDK itself
        "COVERAGE_FILE",  # coverage.py's data file, which need not exist yet
    }
)
# Linux's limit on one environment string (MAX_ARG_STRLEN): a longer value would make every exec fail.
MAX_VALUE_BYTES = 128 * 1024 - 1


def is_path_variable(name: str) -> bool:
    return name in PATH_VARIABLES or name.endswith(PATH_SUFFIXES)


@cache
def _own_settings() -> frozenset[str]:
    from djserve.config.options import REGISTRY

    return frozenset(var for setting in REGISTRY.values() for var in setting.env if var.endswith(SUFFIX))


def _is_own_setting(name: str) -> bool:
    """djserve's own variables that end in _FILE are settings, not files to read (UVICORN_ENV_FILE).

    Only a DJSERVE_ or UVICORN_ name asks the registry, so that a pass-through command imports no more
    than this module to expand DATABASE_URL_FILE."""
    return name.startswith(("DJSERVE_", "UVICORN_")) and name in _own_settings()


@dataclass
class Expanded:
    # Each variable defined from a file, with the _FILE variable it came from.
    files: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def _read(path: str) -> str:
    with open(path, "rb") as file:  # noqa: PTH123 - the path is an environment string
        data = file.read(MAX_VALUE_BYTES + 1).rstrip(b"\n")
    if len(data) > MAX_VALUE_BYTES:
        raise ValueError("it is larger than the 128 KiB an environment variable can hold")
    if b"\0" in data:
        raise ValueError("it contains a NUL byte, which no environment variable can hold")
    return os.fsdecode(data)


def expand(environ: MutableMapping[str, str]) -> Expanded:
    """Define every ``X`` from its ``X_FILE`` in ``environ``; problems are collected, never raised."""
    result = Expanded()
    for file_var in sorted(environ):
        var = file_var.removesuffix(SUFFIX)
        if not file_var.endswith(SUFFIX) or not var or is_path_variable(file_var) or _is_own_setting(file_var):
            continue
        where = f"{file_var} (environment)"
        path = environ[file_var]
        if var in environ:
            result.problems.append(Problem(where, f"{var} is set too; set either {var} or {file_var}"))
            continue
        try:
            value = _read(path)
        except OSError as error:
            result.problems.append(Problem(where, f"cannot read {path}: {error.strerror}"))
            continue
        except ValueError as error:
            result.problems.append(Problem(where, f"cannot use {path}: {error}"))
            continue
        environ[var] = value
        del environ[file_var]
        result.files[var] = file_var
    return result
