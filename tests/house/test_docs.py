"""The README and docs/ hold together: every relative link resolves, file and
heading, and every topic file is linked from the README and links back to it.

Pure and fast: reads Markdown files, nothing else.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

# [text](target) with an optional "title"; images (![alt](src)) are links too.
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = ("http://", "https://", "mailto:")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose_lines(text: str, blank_code: bool = True) -> list[str]:
    """The lines outside fenced code blocks, inline code spans blanked (or kept: a
    heading's anchor keeps the text of its code spans, as on GitHub)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`+[^`]*`+", lambda m: " " * len(m.group(0)), line)
                         if blank_code else line)
    return lines


def links(path: Path) -> list[str]:
    return [m.group(1) for line in prose_lines(path.read_text(encoding="utf-8"))
            for m in LINK.finditer(line)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation
    other than `-`, `_` and spaces dropped, each space a `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # a link's text only
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2 ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(path.read_text(encoding="utf-8"), blank_code=False):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def relative_links(path: Path) -> list[tuple[str, Path, str]]:
    """(link as written, the file it names, the anchor or '')."""
    out = []
    for target in links(path):
        if target.lower().startswith(EXTERNAL):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        out.append((target, resolved, anchor))
    return out


def test_slug_follows_githubs_rule():
    assert slug("Flower: the fleet's live view") == "flower-the-fleets-live-view"
    assert slug("JSON API (`/api/v1`)") == "json-api-apiv1"
    assert slug("Runs: what a request leads to") == "runs-what-a-request-leads-to"
    assert slug("SOPS-encrypted manifests") == "sops-encrypted-manifests"


def test_link_pattern_finds_links_outside_code_only():
    sample = "see [a](x.md) and [b](../y.md#z), not `[c](nope.md)`\n```\n[d](nope.md)\n```\n"
    lines = prose_lines(sample)
    assert [m.group(1) for line in lines for m in LINK.finditer(line)] == ["x.md", "../y.md#z"]


def test_there_are_docs():
    assert README.is_file()
    assert len(list(DOCS.glob("*.md"))) >= 10


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path):
    broken = []
    for target, resolved, anchor in relative_links(path):
        if not resolved.exists():
            broken.append(f"{target}: no such file {resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved}")
        elif anchor:
            if resolved.suffix != ".md" or resolved.is_dir():
                broken.append(f"{target}: an anchor into a file that is not Markdown")
            elif anchor not in anchors(resolved):
                broken.append(f"{target}: no heading with anchor #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(broken)


@pytest.mark.parametrize("doc", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_each_doc_is_linked_from_the_readme_and_back(doc: Path):
    from_readme = {resolved for _, resolved, _ in relative_links(README)}
    assert doc.resolve() in from_readme, f"README.md does not link to docs/{doc.name}"
    to_readme = {resolved for _, resolved, _ in relative_links(doc)}
    assert README.resolve() in to_readme, f"docs/{doc.name} does not link back to ../README.md"


@pytest.mark.parametrize("doc", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_each_doc_starts_with_a_title(doc: Path):
    first = doc.read_text(encoding="utf-8").lstrip().splitlines()[0]
    assert first.startswith("# "), f"docs/{doc.name} starts with {first!r}, not a title"
