"""A preview's result as Markdown: the pull request's comment and ``preview -o markdown``.

``render(record)`` takes what ``shared.state.previews.load`` returns and writes,
top to bottom:

    <!-- fleetsync-preview -->                      the marker the forge poster finds
    ### fleetsync preview: 3 apps, 12 clusters change, 1 refused
    what was compared (source, ref, revisions) and a link to the dashboard
    per application: a table of its clusters that change (outcome, created,
                     changed, pruned, refused), a count of those that do not
    per cluster that changes: <details> with each object, its action and field paths

Every name and message comes from Git or a cluster, so it is escaped for
Markdown and for the HTML GitHub and GitLab accept in comments: a name cannot
close a ``<details>``, open a link or break a table. The records carry field
paths and never a Secret's value; for a Secret only the path part of a field is
written, whatever the record holds.

``limit`` cuts the text at whole sections (a table, one cluster's details), so
no ``<details>`` is left open, and ends it with a line saying how much was left
out and linking to the full result (GitHub takes 65,536 characters in a
comment, GitLab 1,000,000 in a note).
"""

from __future__ import annotations

import re
from typing import Any

MARKER = "<!-- fleetsync-preview -->"
GITHUB_LIMIT = 65_536
GITLAB_LIMIT = 1_000_000
COUNTED = {"create": "created", "update": "changed", "prune": "pruned", "refused": "refused"}
_SPECIAL = re.compile(r"([\\`*_\[\]{}#|~!])")
_VALUE = re.compile(r"[\s:=]")


def escape(text: Any) -> str:
    """``text`` as inert Markdown on one line: no markup, no HTML, no table break."""
    flat = " ".join(str(text).split())
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", flat)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def headline(record: dict[str, Any]) -> str:
    """``3 apps, 12 clusters change, 1 refused``: the status line and the comment's title."""
    if record.get("state") == "running":
        total, done = record.get("total", 0), record.get("done", 0)
        return f"running ({done} of {total} clusters)" if total else "running"
    if record.get("state") == "failed":
        return "failed: " + " ".join(str(record.get("message") or "no reason given").split())
    s = record.get("summary") or {}
    if not s.get("units_changed") and not s.get("refused") and not s.get("failed"):
        return f"no change ({plural(s.get('units', 0), 'unit')} considered)"
    parts = []
    if s.get("units_changed"):
        verb = "changes" if s.get("clusters_changed") == 1 else "change"
        parts.append(f"{plural(s.get('apps_changed', 0), 'app')}, "
                     f"{plural(s.get('clusters_changed', 0), 'cluster')} {verb}")
    parts += [f"{s[key]} {key}" for key in ("refused", "failed") if s.get(key)]
    return ", ".join(parts)


def counts(unit: dict[str, Any]) -> dict[str, int]:
    """Objects created, changed, pruned and refused in one unit's record."""
    out = dict.fromkeys(COUNTED.values(), 0)
    for obj in unit.get("objects") or []:
        name = COUNTED.get(obj.get("action", ""))
        if name:
            out[name] += 1
    return out


def object_name(obj: dict[str, Any]) -> str:
    where = f"{obj.get('namespace')}/" if obj.get("namespace") else ""
    return f"{obj.get('apiVersion', '')} {obj.get('kind', '')} {where}{obj.get('name', '')}"


def fields_of(obj: dict[str, Any]) -> list[str]:
    """The field paths to show; for a Secret the path alone, never what follows it."""
    fields = [str(f) for f in obj.get("fields") or []]
    if obj.get("kind") == "Secret":
        fields = [_VALUE.split(f.strip(), 1)[0] for f in fields]
    return fields


def _intro(record: dict[str, Any], link: str | None) -> str:
    rev = str(record.get("revision") or "")[:12] or "?"
    base = str(record.get("base_revision") or "")[:12]
    line = f"Source {escape(record.get('source', ''))}"
    ref = str(record.get("ref") or "")
    if ref and not str(record.get("revision") or "").startswith(ref):
        line += f", {escape(ref)}"
    line += f" at {escape(rev)}"
    if record.get("base") or base:
        line += f", against {escape(record.get('base') or 'the live revision')}"
        line += f" ({escape(base)})" if base else ""
    line += f"; {plural(len(record.get('units') or []), 'unit')} considered."
    if link:
        line += f" [Full result]({_url(link)})"
    return f"{MARKER}\n### fleetsync preview: {escape(headline(record))}\n\n{line}\n"


def _table(app: str, units: list[dict[str, Any]]) -> str:
    moving = [u for u in units if u.get("outcome") != "unchanged"]
    rows = ["| cluster | outcome | created | changed | pruned | refused |",
            "|---|---|---:|---:|---:|---:|"]
    for u in moving:
        c = counts(u)
        rows.append(f"| {escape(u.get('cluster', ''))} | {escape(u.get('outcome', ''))} | "
                    f"{c['created']} | {c['changed']} | {c['pruned']} | {c['refused']} |")
    quiet = len(units) - len(moving)
    text = f"\n#### {escape(app)}\n\n"
    text += "\n".join(rows) + "\n" if moving else ""
    if quiet:
        text += f"\n{plural(quiet, 'cluster')} unchanged.\n"
    return text


def _details(unit: dict[str, Any]) -> str:
    objects = unit.get("objects") or []
    title = f"{escape(unit.get('app', ''))} on {escape(unit.get('cluster', ''))}: " \
            f"{escape(unit.get('outcome', ''))} ({plural(len(objects), 'object')})"
    lines = [f"\n<details><summary>{title}</summary>\n"]
    if unit.get("message"):
        lines.append(f"{escape(unit['message'])}\n")
    for obj in objects:
        line = f"- {escape(obj.get('action', ''))} {escape(object_name(obj))}"
        fields = fields_of(obj)
        if fields:
            line += ": " + ", ".join(escape(f) for f in fields)
        if obj.get("message"):
            line += f" ({escape(obj['message'])})"
        lines.append(line)
    lines.append("\n</details>\n")
    return "\n".join(lines)


def sections(record: dict[str, Any]) -> list[str]:
    """The whole text in the pieces it may be cut between (after the intro)."""
    by_app: dict[str, list[dict[str, Any]]] = {}
    for unit in record.get("units") or []:
        by_app.setdefault(str(unit.get("app", "")), []).append(unit)
    out: list[str] = []
    quiet = []
    for app in sorted(by_app):
        units = by_app[app]
        if all(u.get("outcome") == "unchanged" for u in units):
            quiet.append(app)
            continue
        out.append(_table(app, units))
        out += [_details(u) for u in units if u.get("outcome") != "unchanged"]
    if quiet:
        out.append(f"\nUnchanged: {', '.join(escape(a) for a in quiet)}.\n")
    return out


def render(record: dict[str, Any], *, limit: int | None = None, link: str | None = None) -> str:
    """The Markdown of ``record``, at most ``limit`` characters (cut at whole sections,
    with a line linking to ``link``)."""
    intro, parts = _intro(record, link), sections(record)
    whole = intro + "".join(parts)
    if limit is None or len(whole) <= limit:
        return whole
    text, kept = intro, 0
    for part in parts:
        if len(text) + len(part) + len(_cut_line(len(parts), link)) > limit:
            break
        text += part
        kept += 1
    text += _cut_line(len(parts) - kept, link)
    return text if len(text) <= limit else text[:limit]


def _cut_line(left: int, link: str | None) -> str:
    where = f": [the full result]({_url(link)})" if link else ": the dashboard has it all"
    return f"\n**Cut to fit** ({plural(left, 'section')} left out){where}\n"


def _url(link: str) -> str:
    """A link target that cannot leave its parentheses."""
    return link.replace("(", "%28").replace(")", "%29").replace(" ", "%20")
