"""The docs against the code: the configuration reference's settings table against the settings registry,
and the link check that `make lint` runs."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest

from djserve.config import presets
from djserve.config.options import ENV_ALIASES, IGNORED_ENV, PRESETS, REGISTRY, Setting

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = ROOT / "docs" / "configuration.md"
# The settings a user gives as DJSERVE_*: the kit's own, and `app`, which uvicorn has too.
DOCUMENTED = [s for s in REGISTRY.values() if s.env[0].startswith("DJSERVE_")]


def load_links() -> ModuleType:
    spec = importlib.util.spec_from_file_location("links", ROOT / "docs" / "links.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table(markdown: str, heading: str) -> dict[str, dict[str, str]]:
    """The first table under `## heading`: {first cell: {column: cell}}."""
    section = markdown.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip().strip("|") for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].split(" | ")]
    rows = [dict(zip(header, (cell.strip() for cell in line.split(" | ")), strict=True)) for line in lines[2:]]
    return {row[header[0]]: row for row in rows}


ROWS = table(CONFIGURATION.read_text(), "Kit settings")


def shown(value: Any) -> str:
    """A value as the table writes it: TOML's spelling in code, "none" for unset."""
    if value in (None, ()):
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def expected_default(setting: Setting) -> str:
    """The registry's default, then each value a preset gives it: "`false`; `true` in the production presets"."""
    by_value: dict[str, list[str]] = {}
    for name in PRESETS:
        preset = presets.table(name)
        if setting.name in preset:
            by_value.setdefault(shown(setting.convert(preset[setting.name])), []).append(name)
    parts = [shown(setting.default)]
    for value, names in by_value.items():
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        parts.append(f"{value} in the {listed} preset{'s' if len(names) > 1 else ''}")
    return "; ".join(parts)


def row(setting: Setting) -> dict[str, str]:
    found = ROWS.get(f"`{setting.name}`")
    assert found, f"docs/configuration.md has no row for `{setting.name}` in its Kit settings table"
    return found


def test_the_table_has_one_row_per_setting_a_user_gives_as_djserve_variable() -> None:
    assert sorted(ROWS) == sorted(f"`{s.name}`" for s in DOCUMENTED)


@pytest.mark.parametrize("setting", DOCUMENTED, ids=lambda s: s.name)
def test_row_states_the_registrys_variables_choices_and_default(setting: Setting) -> None:
    cells = row(setting)
    assert cells["environment"] == ", ".join(f"`{name}`" for name in setting.env)
    if isinstance(setting.param.type, click.Choice):
        assert re.findall(r"`([^`]+)`", cells["values"]) == list(setting.param.type.choices)
    default = expected_default(setting)
    # A note in parentheses may follow, as "(100 MiB)".
    assert cells["default"] == default or cells["default"].startswith(f"{default} ("), default


@pytest.mark.parametrize("setting", [s for s in DOCUMENTED if s.param.help], ids=lambda s: s.name)
def test_row_opens_with_the_help_of_djserve_serve(setting: Setting) -> None:
    assert isinstance(setting.param, click.Option)
    help_text = str(setting.param.help).rstrip(".")
    assert row(setting)["what"].replace("`", "").startswith(help_text), help_text


def test_configuration_names_every_conventional_and_ignored_variable() -> None:
    text = CONFIGURATION.read_text()
    for name in (*(alias for aliases in ENV_ALIASES.values() for alias in aliases), *IGNORED_ENV):
        assert f"`{name}`" in text, name


def test_every_relative_link_and_anchor_of_the_docs_resolves() -> None:
    assert list(load_links().problems_in_repository()) == []


def test_link_check_reports_a_missing_page_and_a_missing_heading(tmp_path: Path) -> None:
    links = load_links()
    (tmp_path / "guide.md").write_text("# Guide\n\n## Secrets in files: any `<VAR>_FILE`\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](guide.md#secrets-in-files-any-var_file) [second](guide.md#twice-1) [web](https://example.com/x)\n"
        "`[code](nowhere.md)`\n"
        "```\n[fenced](nowhere.md)\n```\n"
        "[gone](missing.md) [bad anchor](guide.md#secrets) [here](#guide-2)\n"
    )
    assert [problem.split(": ", 1)[1] for problem in links.problems(page, root=tmp_path)] == [
        "missing.md: missing.md does not exist",
        "guide.md#secrets: no heading 'secrets' in guide.md",
        "#guide-2: no heading 'guide-2' in README.md",
    ]
