"""Presets are data (``presets.toml``); this module only reads them into a layer."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from djserve.config.layers import from_table
from djserve.config.model import Layer


@cache
def _presets() -> dict[str, Any]:
    # Beside this module; importlib.resources would cost 40 ms of imports at every start.
    return tomllib.loads(Path(__file__).with_name("presets.toml").read_text())


def table(name: str) -> dict[str, Any]:
    """A preset with what it ``extends`` merged underneath."""
    preset = dict(_presets()[name])
    base = table(preset.pop("extends")) if "extends" in preset else {}
    merged = {**base, **preset}
    merged["uvicorn"] = {**base.get("uvicorn", {}), **preset.get("uvicorn", {})}
    return merged


def layer(name: str) -> Layer:
    return from_table(table(name), source=f"preset:{name}", origin=f"preset {name}")
