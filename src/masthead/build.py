"""The orchestrator: load → model → editions → atomic publish of ``_site/``.

:func:`build` reads like the pipeline it runs:

1. load the publication (``masthead.toml``) and fingerprint each issue folder;
2. stage a copy of the last good ``_site/`` beside it (hard links: cheap);
3. render each changed issue's editions into the staging folder;
4. write ``manifest.json``;
5. swap the staging folder in for ``_site/`` in one rename, and only then record the
   fingerprints. A build that fails at any step leaves ``_site/`` exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .content import load_issue, load_issue_config, load_publication
from .errors import BuildWarning, MastheadError
from .model import Issue, Publication
from .render.print import render_print_edition

STATE_FILE = "build-state.json"
MANIFEST = "manifest.json"


@dataclass
class IssueReport:
    slug: str
    pages: int
    items: int
    seconds: float
    warnings: list[str] = field(default_factory=list)


@dataclass
class BuildReport:
    """What a build did, for the terminal summary and for callers."""

    site: Path
    built: list[IssueReport] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def noop(self) -> bool:
        return not self.built


Progress = Callable[[str, int, int], None]
"""Called as ``progress(issue_slug, done, total)`` while issues are rendered."""

IssueEdition = Callable[[Publication, Issue, dict[str, Any], Path], list[str]]
"""Renders one edition of an issue into the staging folder ``out`` (under ``out/<slug>/``),
adds its keys to the issue's manifest ``entry``, and returns warnings. Keys starting with
``_`` are kept in the build state for site-wide editions but left out of manifest.json."""

SiteEdition = Callable[[Publication, list[dict[str, Any]], Path, set[str]], list[str]]
"""Renders site-wide outputs (home page, feeds, search index…) from every issue's manifest
entry (newest first) into ``out``; the set holds the slugs rendered in this build."""


def issue_editions() -> list[IssueEdition]:
    """The editions rendered per issue after the print edition, in order."""
    return []


def site_editions() -> list[SiteEdition]:
    """The site-wide editions, rendered after every issue, before the manifest."""
    return []


# ----------------------------------------------------------------------------------------
# Fingerprints: what an issue's outputs depend on


def _code_fingerprint(pub: Publication) -> str:
    """What every issue depends on: masthead.toml, the theme, and the renderers' own code
    and templates (so an upgrade of Masthead re-renders)."""
    h = hashlib.sha256(__version__.encode())
    package = Path(__file__).parent
    for folder in ("render", "i18n"):
        for path in sorted((package / folder).rglob("*")):
            if path.is_file() and path.suffix != ".pyc":
                st = path.stat()
                h.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    if pub.config.theme:
        theme = pub.root / pub.config.theme
        if theme.is_file():
            h.update(theme.read_bytes())
    h.update((pub.root / "masthead.toml").read_bytes())
    return h.hexdigest()


def issue_fingerprint(pub: Publication, slug: str, base: str) -> str:
    """A digest of everything an issue's editions are made from: its folder's files (names,
    sizes, modification times), the publication config, the theme and Masthead's version."""
    h = hashlib.sha256(base.encode())
    folder = pub.issues_dir / slug
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file():
            st = entry.stat()
            h.update(f"{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _load_state(pub: Publication) -> dict[str, Any]:
    try:
        state = json.loads((pub.state_dir / STATE_FILE).read_text("utf-8"))
        return state if isinstance(state, dict) else {}
    except (FileNotFoundError, ValueError):
        return {}


def _save_state(pub: Publication, state: dict[str, Any]) -> None:
    pub.state_dir.mkdir(parents=True, exist_ok=True)
    tmp = pub.state_dir / f".{STATE_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True), "utf-8")
    tmp.replace(pub.state_dir / STATE_FILE)


# ----------------------------------------------------------------------------------------
# Editions of one issue


def pdf_name(pub: Publication, slug: str) -> str:
    stem = "".join(c if c.isalnum() else "-" for c in pub.config.name.lower()).strip("-")
    stem = "-".join(filter(None, stem.split("-"))) or "issue"
    return f"{stem}-{slug}.pdf"


def render_issue(pub: Publication, issue: Issue, out: Path) -> tuple[dict[str, Any], IssueReport]:
    """Render every edition of one issue into ``out/<slug>/``; return its manifest entry."""
    started = time.perf_counter()
    folder = out / issue.slug
    folder.mkdir(parents=True, exist_ok=True)
    edition = render_print_edition(pub, issue)
    pdf = f"{issue.slug}/{pdf_name(pub, issue.slug)}"
    write_file(out / pdf, edition.pdf)
    entry = {
        "slug": issue.slug,
        "volume": issue.volume,
        "number": issue.number,
        "date": issue.date.isoformat(),
        "title": issue.title,
        "pdf": pdf,
        "pdf_bytes": len(edition.pdf),
        "page_count": edition.page_count,
        "pdf_standards": list(edition.standards),
        "items": [
            {
                "slug": item.slug,
                "title": item.title,
                "kind": item.kind.value,
                "pages": list(edition.pages.get(item.slug, (0, 0))),
            }
            for item in issue.items
        ],
    }
    warnings = [*issue.warnings, *edition.warnings]
    for render in issue_editions():
        warnings.extend(render(pub, issue, entry, out))
    report = IssueReport(
        slug=issue.slug,
        pages=edition.page_count,
        items=len(issue.items),
        seconds=time.perf_counter() - started,
        warnings=warnings,
    )
    return entry, report


# ----------------------------------------------------------------------------------------
# Staging and the atomic swap


def _stage(site: Path, staging: Path) -> None:
    """A copy of the last good site made of hard links (the files are never written in place:
    every output is written to a fresh file, so the live site never changes under a build)."""
    if staging.exists():
        shutil.rmtree(staging)
    if site.is_dir():
        try:
            shutil.copytree(site, staging, copy_function=os.link, symlinks=True)
        except OSError:  # a file system without hard links
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(site, staging, symlinks=True)
    else:
        staging.mkdir(parents=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def _publish(staging: Path, site: Path) -> None:
    """Put the staged site live: exchanged atomically where the OS allows, else two renames."""
    if site.exists() and _exchange(staging, site):
        shutil.rmtree(staging, ignore_errors=True)  # staging now holds the old site
        return
    old = site.with_name(site.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if site.exists():
        site.rename(old)
    staging.rename(site)
    shutil.rmtree(old, ignore_errors=True)


def write_file(path: Path, data: bytes | str) -> None:
    """Write an output into the staging folder. Staged files may be hard links to the live
    site, so the old link is removed first: the live file is never changed in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# ----------------------------------------------------------------------------------------
# The build


def build(
    root: Path | str,
    *,
    issue: str | None = None,
    strict: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> BuildReport:
    """Build every issue (or one) into ``root/_site/``, rendering only what changed."""
    started = time.perf_counter()
    pub = load_publication(root)
    site = pub.site_dir
    report = BuildReport(site=site)
    state = _load_state(pub)
    previous: dict[str, Any] = state.get("issues", {})
    base = _code_fingerprint(pub)
    selected = [issue] if issue else pub.issue_slugs
    if issue:
        load_issue_config(pub, issue)  # raises IssueNotFound with the list of issues
    fingerprints = {slug: issue_fingerprint(pub, slug, base) for slug in selected}
    site_ok = (site / MANIFEST).is_file()
    todo = [
        slug
        for slug in selected
        if force
        or not site_ok
        or previous.get(slug, {}).get("fingerprint") != fingerprints[slug]
        or not (site / previous[slug]["entry"]["pdf"]).is_file()
    ]
    gone = [slug for slug in previous if slug not in pub.issue_slugs]
    report.unchanged = [slug for slug in selected if slug not in todo]
    if not todo and not gone:
        report.seconds = time.perf_counter() - started
        return report

    staging = pub.root / f".{site.name}.building"
    _stage(site, staging)
    try:
        entries = {slug: rec["entry"] for slug, rec in previous.items() if slug not in gone}
        for slug in gone:
            _remove(staging / slug)
        for n, slug in enumerate(todo):
            if progress:
                progress(slug, n, len(todo))
            loaded = load_issue(pub, slug)
            _remove(staging / slug)
            entry, issue_report = render_issue(pub, loaded, staging)
            entries[slug] = entry
            report.built.append(issue_report)
            report.warnings.extend(issue_report.warnings)
        if progress:
            progress("", len(todo), len(todo))
        if strict and report.warnings:
            raise BuildWarning(
                f"--strict: {len(report.warnings)} warning(s) stop the build:\n  "
                + "\n  ".join(report.warnings),
                fix="fix each warning above, or build without --strict",
            )
        ordered = manifest_order(entries.values())
        for render_site in site_editions():
            report.warnings.extend(render_site(pub, ordered, staging, set(todo)))
        write_manifest(pub, ordered, staging)
        _publish(staging, site)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    state["issues"] = {
        slug: {
            "fingerprint": fingerprints.get(slug) or previous[slug]["fingerprint"],
            "entry": entries[slug],
        }
        for slug in entries
    }
    _save_state(pub, state)
    report.seconds = time.perf_counter() - started
    return report


def manifest_order(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Newest issue first: by volume, then number."""
    return sorted(entries, key=lambda e: (e["volume"], e["number"], e["slug"]), reverse=True)


def write_manifest(pub: Publication, entries: Iterable[dict[str, Any]], out: Path) -> None:
    manifest = {
        "publication": {
            "name": pub.config.name,
            "tagline": pub.config.tagline,
            "language": pub.config.language,
            "base_url": pub.config.base_url,
        },
        "generator": f"Masthead {__version__}",
        "issues": [
            {k: v for k, v in entry.items() if not k.startswith("_")}
            for entry in manifest_order(entries)
        ],
    }
    write_file(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False))


__all__ = ["BuildReport", "IssueReport", "MastheadError", "build", "render_issue"]
