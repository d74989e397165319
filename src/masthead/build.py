"""The orchestrator: load → model → editions → atomic publish of ``_site/``.

:func:`build` reads like the pipeline it runs:

1. load the publication (``masthead.toml``), take its build lock (one build at a time,
   :mod:`masthead.build_lock`) and fingerprint each issue folder;
2. stage a copy of the last good ``_site/`` beside it (hard links: cheap), in a folder of
   this build's own (``._site.building-<pid>-<random>``);
3. render each changed issue's editions into the staging folder;
4. write ``manifest.json``, then the record of a whole build (:mod:`masthead.site_check`);
5. swap the staging folder in for ``_site/`` in one rename, and only then record the
   fingerprints. A build that fails at any step leaves ``_site/`` exactly as it was; a full
   disk, a read-only disk or a missing permission is a :class:`StorageError` naming the path.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .build_lock import Waiting, build_lock
from .content import load_issue, load_issue_config, load_publication
from .errors import BuildWarning, ConfigError, MastheadError, disk_fault
from .model import Issue, Publication
from .render.print import PrintEdition, render_print_edition
from .site_check import site_problems, stamp_digest, write_stamp

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
    damage: list[str] = field(default_factory=list)
    """What was wrong with ``_site/`` before this build (a file deleted since it was built…):
    such a site is built again in full."""

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
    from .render.email import render_email_preview
    from .render.web import render_web_issue

    return [render_web_issue, render_email_preview]


def site_editions() -> list[SiteEdition]:
    """The site-wide editions, rendered after every issue, before the manifest."""
    from .render.web import render_web_site

    return [render_web_site]


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


def _prepare_state(pub: Publication, state: dict[str, Any]) -> Path:
    """Write the new build state beside the old one, before the site goes live: a full disk
    or a read-only ``.masthead/`` stops the build while ``_site/`` is still the old one.
    :func:`_commit_state` puts it in place (a rename needs no space)."""
    pub.state_dir.mkdir(parents=True, exist_ok=True)
    tmp = pub.state_dir / f".{STATE_FILE}.{os.getpid()}-{secrets.token_hex(4)}"
    tmp.write_text(json.dumps(state, separators=(",", ":")), "utf-8")
    return tmp


def _commit_state(pub: Publication, prepared: Path) -> None:
    prepared.replace(pub.state_dir / STATE_FILE)


def _sweep_state_leftovers(pub: Publication) -> None:
    """New states that builds wrote but never put in place (killed or failed)."""
    for leftover in pub.state_dir.glob(f".{STATE_FILE}.*"):
        leftover.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------
# Editions of one issue


def pdf_name(pub: Publication, slug: str, lang: str | None = None) -> str:
    stem = "".join(c if c.isalnum() else "-" for c in pub.config.name.lower()).strip("-")
    stem = "-".join(filter(None, stem.split("-"))) or "issue"
    return f"{stem}-{slug}.{lang}.pdf" if lang else f"{stem}-{slug}.pdf"


def edition_dir(issue: Issue) -> str:
    """Where an edition's files go in the site: ``<slug>`` for the main language,
    ``<lang>/<slug>`` for another (each language is a sub-site of its own)."""
    return f"{issue.lang}/{issue.slug}" if issue.lang else issue.slug


def _render_print(pub: Publication, issue: Issue, out: Path) -> tuple[dict[str, Any], PrintEdition]:
    """The print edition of one issue (in its language): the PDF and its manifest keys."""
    edition = render_print_edition(pub, issue)
    pdf = f"{edition_dir(issue)}/{pdf_name(pub, issue.slug, issue.lang)}"
    write_file(out / pdf, edition.pdf)
    keys = {
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
    return keys, edition


def _render_language(pub: Publication, issue: Issue, out: Path) -> dict[str, Any]:
    """Every edition of one issue in another language, into ``out/<lang>/<slug>/``: its
    manifest keys (``pdf``, ``items``… and what the other editions add)."""
    (out / edition_dir(issue)).mkdir(parents=True, exist_ok=True)
    keys, edition = _render_print(pub, issue, out)
    issue.warnings.extend(edition.warnings)
    for render in issue_editions():
        issue.warnings.extend(render(pub, issue, keys, out))
    return keys


def render_issue(
    pub: Publication, issue: Issue, out: Path, languages: list[str] | None = None
) -> tuple[dict[str, Any], IssueReport]:
    """Render every edition of one issue into ``out/<slug>/``; return its manifest entry.

    The main language's edition fills the entry; each other language in ``languages`` that
    has items in this issue adds ``entry["editions"][lang]``."""
    started = time.perf_counter()
    (out / issue.slug).mkdir(parents=True, exist_ok=True)
    keys, edition = _render_print(pub, issue, out)
    entry = {
        "slug": issue.slug,
        "volume": issue.volume,
        "number": issue.number,
        "date": issue.date.isoformat(),
        "title": issue.title,
        **keys,
    }
    warnings = [*issue.warnings, *edition.warnings]
    for render in issue_editions():
        warnings.extend(render(pub, issue, entry, out))
    for lang in languages or []:
        _remove(out / lang / issue.slug)
        translated = load_issue(pub, issue.slug, lang)
        if translated.items:
            entry.setdefault("editions", {})[lang] = _render_language(pub, translated, out)
        warnings.extend(translated.warnings)
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


def _stage(site: Path | None, staging: Path, skip: AbstractSet[str] = frozenset()) -> None:
    """A copy of the last good site made of hard links (the files are never written in place:
    every output is written to a fresh file, so the live site never changes under a build).
    Top-level entries in ``skip`` (issues about to be rendered again) are left out. Without
    a site to start from, the staging folder starts empty."""
    if site is None or not site.is_dir():
        staging.mkdir(parents=True)
        return
    try:
        _link_tree(str(site), str(staging), skip)
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:  # a full disk, a read-only one…: no copy either
            raise
        shutil.rmtree(staging, ignore_errors=True)
        top = str(site)  # as in _link_tree, only top-level entries are skipped
        shutil.copytree(
            site,
            staging,
            symlinks=True,
            ignore=lambda d, names: set(skip) & set(names) if d == top else set(),
        )


# What os.link says on a file system that has no hard links (or not that many).
_NO_HARD_LINKS = {errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV}


def _link_tree(source: str, target: str, skip: AbstractSet[str] = frozenset()) -> None:
    # os.scandir + os.link without shutil's per-file stat copying: an archive site holds
    # tens of thousands of files, and this runs on every build.
    os.mkdir(target)
    with os.scandir(source) as entries:
        for entry in entries:
            if entry.name in skip:
                continue
            destination = os.path.join(target, entry.name)
            if entry.is_dir(follow_symlinks=False):
                _link_tree(entry.path, destination)
            else:
                os.link(entry.path, destination, follow_symlinks=False)


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
    """Put the staged site live: exchanged atomically where the OS allows, else two renames.
    The old site is then deleted in the background: the new one is already live."""
    if site.exists() and _exchange(staging, site):
        _remove_in_background(staging, site)  # staging now holds the old site
        return
    old = site.with_name(site.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if site.exists():
        site.rename(old)
    staging.rename(site)
    _remove_in_background(old, site)


def _staging_name(site: Path) -> Path:
    """This build's own staging folder, beside ``_site/`` (one file system: one rename)."""
    return site.with_name(f".{site.name}.building-{os.getpid()}-{secrets.token_hex(4)}")


def _remove_in_background(path: Path, site: Path) -> None:
    """Delete a tree without making the build wait. It is renamed aside at once, to
    ``._site.deleting-…`` (a name no build stages in), then removed by a detached process (a
    single-threaded command) or a daemon thread (a long-running server such as ``masthead
    serve``)."""
    if not path.exists():
        return
    doomed = site.with_name(f".{site.name}.deleting-{os.getpid()}-{time.monotonic_ns()}")
    path.rename(doomed)
    os.utime(doomed)  # marks when it was set aside (see _sweep_leftovers)
    if threading.active_count() > 1 or not hasattr(os, "fork"):
        threading.Thread(target=shutil.rmtree, args=(doomed, True), daemon=True).start()
        return
    try:
        child = os.fork()
    except OSError:
        shutil.rmtree(doomed, ignore_errors=True)
        return
    if child == 0:
        # Fork again so that the deleting process belongs to init, not to us: no zombie.
        # It keeps no descriptor of ours: the build lock, among them, is ours to release.
        try:
            os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024)
            if os.fork() == 0:
                shutil.rmtree(doomed, ignore_errors=True)
        finally:
            os._exit(0)
    os.waitpid(child, 0)


def _sweep_leftovers(pub: Publication) -> None:
    """Called with the build lock held. Staging folders of builds that were killed or failed
    (no other build is staging now) are set aside for deletion in the background. Old sites
    whose background deletion never finished (the machine stopped) are deleted; one set
    aside minutes ago is probably still being deleted, and is left to that process."""
    site = pub.site_dir
    for staging in pub.root.glob(f".{site.name}.building*"):
        if ".old-" not in staging.name:  # (old sites set aside by earlier versions)
            _remove_in_background(staging, site)
    cutoff = time.time() - 600
    patterns = (
        f".{site.name}.deleting-*",
        f".{site.name}.building.old-*",
        f"{site.name}.old.old-*",
    )
    for pattern in patterns:
        for leftover in pub.root.glob(pattern):
            try:
                if leftover.stat().st_mtime < cutoff:
                    shutil.rmtree(leftover, ignore_errors=True)
            except FileNotFoundError:
                pass


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
    lang: str | None = None,
    progress: Progress | None = None,
    wait: float | None = None,
    on_wait: Waiting | None = None,
) -> BuildReport:
    """Build every issue (or one) into ``root/_site/``, rendering only what changed.

    ``lang`` builds one language's edition only (the others stay as they were). One build of
    a publication runs at a time: another waits for it (``on_wait`` is told so), for ever or
    for ``wait`` seconds, then raises :class:`~masthead.errors.BuildBusy`."""
    started = time.perf_counter()
    pub = load_publication(root)
    try:
        with build_lock(pub.state_dir, wait=wait, on_wait=on_wait):
            report = _build_locked(
                pub, issue=issue, strict=strict, force=force, lang=lang, progress=progress
            )
    except OSError as exc:
        fault = disk_fault(exc, path=pub.root, unchanged="_site/ holds the last good build")
        if fault is None:
            raise
        raise fault from None
    report.seconds = time.perf_counter() - started
    return report


def _build_locked(
    pub: Publication,
    *,
    issue: str | None,
    strict: bool,
    force: bool,
    lang: str | None,
    progress: Progress | None,
) -> BuildReport:
    """The build, with the publication's build lock held."""
    _sweep_leftovers(pub)
    _sweep_state_leftovers(pub)
    languages = pub.config.edition_languages
    if lang is not None and lang not in languages:
        raise ConfigError(
            f"this publication has no {lang!r} edition",
            path=pub.root / "masthead.toml",
            fix=f"use one of {', '.join(languages)}, or add {lang!r} to `languages`",
        )
    site = pub.site_dir
    report = BuildReport(site=site)
    if issue:
        load_issue_config(pub, issue)  # raises IssueNotFound with the list of issues
    state = _load_state(pub)
    report.damage = _site_damage(site, state)
    if report.damage:  # damaged since it was built (or built by an older Masthead): all again
        issue, lang, force = None, None, True
    previous: dict[str, Any] = state.get("issues", {})
    base = _code_fingerprint(pub)
    selected = [issue] if issue else pub.issue_slugs
    fingerprints = {slug: issue_fingerprint(pub, slug, base) for slug in selected}
    site_ok = site.is_dir()
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
        return report

    staging = _staging_name(site)
    rerendered = {slug for slug in todo if lang is None or slug not in previous}
    prepared: Path | None = None
    try:
        # A damaged site is not built on: the new one starts empty, so nothing missing from
        # the old one can go missing from the new one unnoticed.
        _stage(None if report.damage else site, staging, skip=rerendered | set(gone))
        entries = {slug: rec["entry"] for slug, rec in previous.items() if slug not in gone}
        for slug in gone:
            _remove(staging / slug)
            for other in languages[1:]:
                _remove(staging / other / slug)
        for n, slug in enumerate(todo):
            if progress:
                progress(slug, n, len(todo))
            entry, issue_report = _render_selected(pub, slug, staging, lang, entries.get(slug))
            if lang is not None and slug in entries:
                fingerprints[slug] = None  # a partial build: the next full build renders all
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
        state["site"] = write_stamp(staging, f"Masthead {__version__}")  # last: it is whole
        state["issues"] = {
            slug: {
                "fingerprint": fingerprints[slug]
                if slug in fingerprints
                else previous[slug]["fingerprint"],
                "entry": entries[slug],
            }
            for slug in entries
        }
        prepared = _prepare_state(pub, state)
        _publish(staging, site)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if prepared is not None:
            prepared.unlink(missing_ok=True)
        raise
    _commit_state(pub, prepared)
    return report


def _site_damage(site: Path, state: dict[str, Any]) -> list[str]:
    """Why ``_site/`` cannot be built on incrementally: files missing since it was built,
    or a build state that is not this site's (a build killed between putting its site live
    and recording its state: the state tells of the site before)."""
    if not site.is_dir():
        return []
    problems = site_problems(site)
    if not problems and state.get("site") != stamp_digest(site):
        problems = [
            ".masthead/build-state.json does not describe this site (a build was stopped "
            "before it recorded it, or the file was replaced)"
        ]
    return problems


def _render_selected(
    pub: Publication, slug: str, out: Path, lang: str | None, previous: dict[str, Any] | None
) -> tuple[dict[str, Any], IssueReport]:
    """Render an issue's editions: all of them, or (``lang``) one language's, keeping the
    others' outputs and manifest keys from the previous build."""
    main, *others = pub.config.edition_languages
    if lang is None or previous is None:
        _remove(out / slug)  # (each other language's folder is removed as it is rendered)
        return render_issue(pub, load_issue(pub, slug), out, others)
    if lang == main:
        entry, report = render_issue(pub, load_issue(pub, slug), out, [])
        if "editions" in previous:
            entry["editions"] = previous["editions"]
        return entry, report
    started = time.perf_counter()
    translated = load_issue(pub, slug, lang)
    entry = dict(previous)
    editions = dict(entry.get("editions", {}))
    editions.pop(lang, None)
    _remove(out / lang / slug)
    if translated.items:
        editions[lang] = _render_language(pub, translated, out)
    entry["editions"] = editions
    pages = editions.get(lang, {}).get("page_count", 0)
    warnings = list(translated.warnings)
    report = IssueReport(
        slug=f"{slug} ({lang})",
        pages=pages,
        items=len(translated.items),
        seconds=time.perf_counter() - started,
        warnings=warnings,
    )
    return entry, report


def manifest_order(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Newest issue first: by volume, then number."""
    return sorted(entries, key=lambda e: (e["volume"], e["number"], e["slug"]), reverse=True)


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as manifest.json shows it: the build state's ``_`` keys left out, in the
    language editions too."""
    public = {k: v for k, v in entry.items() if not k.startswith("_")}
    if "editions" in public:
        public["editions"] = {lang: _public(e) for lang, e in public["editions"].items()}
    return public


def write_manifest(pub: Publication, entries: Iterable[dict[str, Any]], out: Path) -> None:
    manifest = {
        "publication": {
            "name": pub.config.name,
            "tagline": pub.config.tagline,
            "language": pub.config.language,
            "base_url": pub.config.base_url,
        },
        "generator": f"Masthead {__version__}",
        "issues": [_public(entry) for entry in manifest_order(entries)],
    }
    write_file(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False))


__all__ = ["BuildReport", "IssueReport", "MastheadError", "build", "render_issue"]
