"""The vocabulary of configuration: problems, raw values in layers, and the resolved kit configuration.

Data only: every other module of ``djserve.config`` imports these, and these import none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from djserve.config.options import Setting


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class Value:
    """One raw value from one layer. ``negated`` marks a ``no-`` flag spelling."""

    setting: Setting
    raw: Any
    source: str
    where: str
    negated: bool = False
    secret: bool = False  # read from a file (djserve.config.envfiles): never shown


@dataclass
class Layer:
    values: list[Value] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Effective:
    value: Any
    source: str
    where: str
    secret: bool = False  # a secret setting, or read from a file: shown as <redacted>


@dataclass
class KitConfig:
    """djserve's resolved configuration: one value per setting, each knowing its source.

    Not Django's settings, which the user's project defines and djserve only reads.
    """

    values: dict[str, Effective]
    problems: list[Problem] = field(default_factory=list)
    wsgi_app: Effective | None = None  # hybrid's WSGI side, which serves sync views: not a setting
    notices: list[str] = field(default_factory=list)  # logged once at start
    warnings: list[str] = field(default_factory=list)  # logged once at start, as warnings

    def __getitem__(self, name: str) -> Any:
        return self.values[name].value

    def where(self, name: str) -> str:
        return self.values[name].where

    def shown(self, name: str) -> Any:
        """The value as djserve prints it: a secret one is redacted."""
        from djserve.defaults import REDACTED

        effective = self.values[name]
        if effective.secret and effective.value is not None:
            return REDACTED
        return effective.value
