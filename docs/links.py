"""Checks the relative links of the project's Markdown, offline: every linked file exists, and every
``#anchor`` names a heading (by GitHub's rule for heading ids) or an explicit ``<a id>`` of the page.
Links with a scheme (``https:``, ``mailto:``) are not followed. ``make lint`` runs it.

    python docs/links.py [FILE_OR_DIRECTORY ...]    # default: every *.md of the repository

Prints one line per broken link (``README.md:12: docs/x.md#y: no heading 'y' in docs/x.md``) and exits 1.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Folders that hold no documentation of the project: virtualenvs, caches, downloads, build output.
SKIPPED = {"wheels", "build", "node_modules"}

FENCE = re.compile(r"^\s{0,3}(```|~~~)")
CODE_SPAN = re.compile(r"(`+).*?\1")
INLINE = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
EXPLICIT = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def prose(text: str) -> Iterator[tuple[int, str]]:
    """Numbered lines outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation but - and _ dropped, spaces as -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


@functools.cache
def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose(page.read_text(encoding="utf-8")):
        found.update(EXPLICIT.findall(line))
        heading = HEADING.match(line)
        if heading:
            base = slug(heading[1])
            # A repeated heading gets -1, -2, ... as on GitHub.
            found.add(f"{base}-{seen[base]}" if base in seen else base)
            seen[base] = seen.get(base, 0) + 1
    return found


def links(page: Path) -> Iterator[tuple[int, str]]:
    for number, line in prose(page.read_text(encoding="utf-8")):
        text = CODE_SPAN.sub("", line)
        for target in (*INLINE.findall(text), *REFERENCE.findall(text)):
            yield number, target


def problems(page: Path, root: Path = ROOT) -> Iterator[str]:
    """One line per broken link of a page, with paths relative to root."""
    for number, target in links(page):
        if SCHEME.match(target) or target.startswith("//"):
            continue
        path, _, fragment = urllib.parse.unquote(target).partition("#")
        linked = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(root)}:{number}: {target}"
        if not linked.exists():
            yield f"{where}: {path} does not exist"
        elif fragment and linked.suffix == ".md" and fragment.lower() not in anchors(linked):
            yield f"{where}: no heading {fragment!r} in {linked.relative_to(root)}"


def markdown(arguments: Iterable[str]) -> Iterator[Path]:
    for argument in arguments:
        path = Path(argument).resolve()
        yield from sorted(path.rglob("*.md")) if path.is_dir() else [path]


def repository_markdown() -> Iterator[Path]:
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = sorted(s for s in subfolders if not s.startswith(".") and s not in SKIPPED)
        yield from (Path(folder) / name for name in sorted(files) if name.endswith(".md"))


def problems_in_repository() -> Iterator[str]:
    for page in repository_markdown():
        yield from problems(page)


def main(arguments: list[str]) -> int:
    pages = markdown(arguments) if arguments else repository_markdown()
    found = [problem for page in pages for problem in problems(page)]
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
