"""Search across every issue: Pagefind's static index in the browser, and a plain text
search for ``masthead search`` on the terminal.

- In the browser: after the site is written, Pagefind (``pagefind[extended]`` on PyPI, a
  Rust binary) indexes each item's permalink page (``data-pagefind-body``) into
  ``_site/pagefind/part-NNN/`` (:data:`PART_ISSUES` issues a part); ``static/search.js``
  loads the parts from ``search/index.html`` and merges them. It works from any static
  host (it needs HTTP: browsers do not let a page at ``file://`` fetch).
- On the terminal: each issue's ``<slug>/search.json`` (written with the issue, so an
  unchanged issue's file is kept) holds its items' plain text; :func:`search_site` reads the
  manifest and those files, and ranks the items that hold every word of the query.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import MastheadError

PAGEFIND_DIR = "pagefind"

PART_ISSUES = 40
"""Issues per Pagefind index. The archive is indexed in parts (oldest issues first, so a
new issue only changes the last part) and the browser merges the parts when it searches:
a rebuild after editing one item re-indexes only that item's part."""


class SearchError(MastheadError):
    """The site has no search data to look in."""


def search_parts(entries: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The Pagefind parts of the archive, newest part first: (folder name, issue slugs)."""
    oldest_first = [e["slug"] for e in reversed(entries)]
    parts = [
        (f"part-{k // PART_ISSUES:03d}", oldest_first[k : k + PART_ISSUES])
        for k in range(0, len(oldest_first), PART_ISSUES)
    ]
    return list(reversed(parts))


def _glob_escape(name: str) -> str:
    return "".join("\\" + c if c in "\\*?[]{}," else c for c in name)


def build_pagefind_index(out: Path, entries: list[dict[str, Any]]) -> list[str]:
    """Index the item pages of the staged site with Pagefind, one part at a time, and only
    the parts whose issues changed; return warnings. Each entry remembers its part in
    ``_search_part`` (a freshly rendered issue has none, so its part is indexed again)."""
    root = out / PAGEFIND_DIR
    parts = search_parts(entries)
    by_slug = {e["slug"]: e for e in entries}
    wanted = {name for name, _ in parts}
    if root.is_dir():
        for old in root.iterdir():
            if old.name not in wanted:
                _remove(old)
    todo = []
    for name, slugs in parts:
        key = f"{name}:" + hashlib.sha256("\0".join(slugs).encode()).hexdigest()[:16]
        target = root / name
        fresh = (target / "pagefind.js").is_file() and all(
            by_slug[s].get("_search_part") == key for s in slugs
        )
        if not fresh:
            todo.append((target, slugs))
        for s in slugs:
            by_slug[s]["_search_part"] = key
    if not todo:
        return []
    try:
        import pagefind  # noqa: F401
    except ImportError:
        for e in entries:
            e.pop("_search_part", None)
        return [
            "search: Pagefind is not installed, so the site has no search index "
            '(pip install "pagefind[extended]")'
        ]
    warnings: list[str] = []
    running = []
    for target, slugs in todo:
        # The staged folder holds hard links to the live index: remove, never rewrite them.
        _remove(target)
        glob = "{" + ",".join(_glob_escape(s) for s in slugs) + "}/*/index.html"
        command = [*_pagefind(), "--site", str(out), "--glob", glob]
        command += ["--output-path", str(target), "--silent"]
        running.append(
            (target, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        )
        if len(running) >= (os.cpu_count() or 1):
            warnings += _finish(running.pop(0), entries)
    for job in running:
        warnings += _finish(job, entries)
    return warnings


@functools.cache
def _pagefind() -> tuple[str, ...]:
    """The Pagefind binary that ``pagefind[extended]`` ships, run directly: ``python -m
    pagefind`` would start a second interpreter only to exec it."""
    try:
        from pagefind.service import _must_get_executable

        return (str(_must_get_executable().resolve()),)
    except (ImportError, AttributeError, FileNotFoundError):  # another layout of the package
        return (sys.executable, "-m", "pagefind")


def _finish(job: tuple[Path, subprocess.Popen[bytes]], entries: list[dict[str, Any]]) -> list[str]:
    target, process = job
    stdout, stderr = process.communicate()
    if process.returncode == 0 and (target / "pagefind.js").is_file():
        return []
    for e in entries:  # index again next time
        if e.get("_search_part", "").startswith(target.name + ":"):
            e.pop("_search_part")
    detail = (stderr or stdout).decode("utf-8", "replace").strip().splitlines()
    reason = detail[-1] if detail else f"exit status {process.returncode}"
    return [f"search: Pagefind could not index {target.name} ({reason})"]


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# ----------------------------------------------------------------------------------------
# The terminal search


@dataclass(frozen=True)
class Match:
    """One item that holds every word of the query."""

    issue: str
    volume: int
    number: int
    date: str
    item: str
    title: str
    pages: list[int]
    html: str
    score: int
    snippet: str


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a text ("Lucía" → "lucia")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _snippet(texts: list[str], words: list[str], width: int = 160) -> str:
    for text in texts:
        folded = fold(text)
        # fold() keeps one character per character for almost all text; fall back safely
        at = min((folded.find(w) for w in words if w in folded), default=-1)
        if at < 0:
            continue
        if len(folded) != len(text):
            at = 0
        start = max(0, at - width // 3)
        if start:  # begin at a word
            space = text.find(" ", start, at)
            start = space + 1 if space >= 0 else start
        snippet = text[start : start + width].strip()
        return ("…" if start else "") + snippet + ("…" if start + width < len(text) else "")
    return ""


def search_site(root: Path, query: str, limit: int = 20, lang: str | None = None) -> list[Match]:
    """The items of every built issue that hold every word of ``query``, best first; with
    ``lang``, in that language's edition (``_site/<lang>/``)."""
    site = Path(root) / "_site"
    manifest_path = site / "manifest.json"
    if not manifest_path.is_file():
        raise SearchError(
            f"no built site in {site}",
            path=site,
            fix=f"run `masthead build {root}` first",
        )
    words = [w for w in fold(query).split() if w]
    if not words:
        raise SearchError("the query is empty", fix='give a word to look for, e.g. "footbridge"')
    manifest = json.loads(manifest_path.read_text("utf-8"))
    matches: list[Match] = []
    editions = {e for issue in manifest.get("issues", []) for e in issue.get("editions", {})}
    if lang is not None and lang not in editions:
        lang = None  # the main language (or a language with no edition: its main one)
    for issue in manifest.get("issues", []):
        path = site / (f"{lang}/" if lang else "") / issue["slug"] / "search.json"
        if not path.is_file():
            continue
        record: dict[str, Any] = json.loads(path.read_text("utf-8"))
        for item in record["items"]:
            title = fold(item["title"])
            body = fold("\n".join(item["text"]))
            if not all(w in title or w in body for w in words):
                continue
            score = sum(5 * title.count(w) + body.count(w) for w in words)
            matches.append(
                Match(
                    issue=record["slug"],
                    volume=record["volume"],
                    number=record["number"],
                    date=record["date"],
                    item=item["slug"],
                    title=item["title"],
                    pages=item["pages"],
                    html=item["html"],
                    score=score,
                    snippet=_snippet([*item["text"], item["title"]], words),
                )
            )
    matches.sort(key=lambda m: (m.date, m.issue), reverse=True)  # ties: newest first
    matches.sort(key=lambda m: -m.score)
    return matches[:limit]
