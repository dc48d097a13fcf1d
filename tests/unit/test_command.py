"""Property: any configuration djserve resolves renders a `djserve command` line uvicorn accepts as is."""

from __future__ import annotations

import os
import shlex
from typing import Any

import click
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from uvicorn.main import main as uvicorn_main

from djserve.config.command import render
from djserve.config.options import REGISTRY, Host, Implementation, Workers
from djserve.config.resolve import resolve
from djserve.config.uvicorn_args import uvicorn_options
from djserve.defaults import REDACTED

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zs")), min_size=1, max_size=12)
# Options that name files must name real ones for uvicorn's click types to accept them.
PATHS = st.sampled_from(["/", os.devnull, "/tmp"])


def values_for(param: click.Parameter) -> st.SearchStrategy[str]:
    kind = param.type
    if isinstance(kind, Workers):
        return st.one_of(st.just("auto"), st.integers(1, 64).map(str))
    if isinstance(kind, Implementation):
        return st.sampled_from(sorted(kind.known))  # those not installed are configuration errors
    if isinstance(kind, Host):
        return st.sampled_from(["127.0.0.1", "::1", "localhost", "web.example.com"])
    if isinstance(kind, click.Choice):
        return st.sampled_from([str(c) for c in kind.choices])
    if isinstance(kind, click.IntRange):
        return st.integers(kind.min or 0, kind.max or 10**6).map(str)
    if isinstance(kind, click.types.IntParamType):
        return st.integers(0, 10**6).map(str)
    if isinstance(kind, click.types.FloatParamType):
        return st.floats(0, 1000, allow_nan=False).map(lambda f: f"{f:.3f}")
    if isinstance(kind, click.types.BoolParamType):
        return st.sampled_from(["true", "false", "1", "0", "yes", "no"])
    if isinstance(kind, click.Path):
        return PATHS
    return TEXT


UVICORN = {n: s for n, s in REGISTRY.items() if s.group == "uvicorn" and n not in ("app", "factory", "reload")}
environments = st.sets(st.sampled_from(sorted(UVICORN)), max_size=8).flatmap(
    lambda chosen: st.fixed_dictionaries({f"UVICORN_{n.upper()}": values_for(UVICORN[n].param) for n in chosen})
)


def parsed(line: str) -> dict[str, Any]:
    argv = shlex.split(line)
    start = argv.index("uvicorn")
    assert all("=" in word for word in argv[:start])
    return uvicorn_main.make_context("uvicorn", argv[start + 1 :]).params


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(environ=environments)
def test_rendered_command_is_accepted_by_uvicorn(environ: dict[str, str]) -> None:
    environ = {**environ, "DJSERVE_APP": "mysite.asgi:application", "DJSERVE_CONFIG": os.devnull}
    resolved = resolve([], environ)
    assume(not resolved.problems)
    params = parsed(render(resolved, environ))
    for name, value in uvicorn_options(resolved).items():
        if REGISTRY[name].secret and value is not None:
            assert params[name] == REDACTED
        elif name in ("interface",):
            assert params[name] == "asgi3"
        else:
            expected = list(value) if isinstance(value, tuple) else value
            got = list(params[name]) if isinstance(params[name], tuple) else params[name]
            assert got == expected or (got is None and expected in (None, ())), name
    assert params["factory"] is True
    assert params["app"] == "djserve.worker:create"
