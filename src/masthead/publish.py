"""Publish the built site (``_site/``) to a static host, switching the live version atomically.

A publish target is a folder (here, or on another machine reached over ssh + rsync):

::

    TARGET/
      .masthead-publish        marks the folder as a target (nothing else is ever clobbered)
      current -> releases/<id> the live release: the web server's root is TARGET/current
      releases/<id>/           one complete copy of _site/ per publish, never changed after
      releases/.partial-<id>/  a release being written (removed by the next publish)
      filelists/<id>.json      each release's files and their SHA-256 (local targets only)
      .masthead-history        one line per switch of current, oldest first (append-only)
      .masthead-publish.lock/  held by a publish over ssh while it writes (removed at the end)

:func:`publish` reads like the steps it takes:

1. check that ``_site/`` is the whole of one build (:mod:`masthead.site_check`: the build's
   record, every file it lists, every file ``manifest.json`` names, ``index.html``), else
   publish nothing; read ``_site/``: every file and its SHA-256, and the site's content hash;
2. if the live release has the same content hash, stop: nothing to publish;
3. write the new release under ``releases/.partial-<id>/``: files unchanged since the live
   release are hard links to it, the rest are copied (a remote target: ``rsync
   --link-dest``); the partial folder is renamed to ``releases/<id>`` once complete;
4. switch ``current`` in one ``rename(2)`` of a new symlink over the old one, so a web
   server never sees a half-published site (a request is served from one release or the
   other);
5. record the switch in ``.masthead-history``;
6. delete the releases beyond the ``keep`` that matter most: the live one, then the ones
   ``--rollback`` would go back to (the releases that were live before it, in turn).

``--rollback`` goes back along the history: to the release that was live before the live
one became live, never to one that was rolled back from (a known-bad release).

A release id is ``<UTC time>-<12 hex digits of the content hash>``: ids sort by time, and
the hash tells whether the live release already holds what ``_site/`` holds.

This module reads the built site only: it never imports the subscriber store.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .build_lock import Waiting, build_lock
from .errors import PublishError, disk_fault
from .model import Publication
from .site_check import site_problems

MARKER = ".masthead-publish"
CURRENT = "current"
RELEASES = "releases"
FILELISTS = "filelists"
PARTIAL = ".partial-"
HISTORY = ".masthead-history"
LOCK = ".masthead-publish.lock"
DEFAULT_KEEP = 5
RSH_ENV = "MASTHEAD_RSH"

_RELEASE_RE = re.compile(r"^(\d{8}T\d{6}Z)-([0-9a-f]{12})$")
_MARKER_TEXT = (
    '{"masthead_publish": 1, "about": "a masthead publish target: releases/ holds the '
    'published versions of the site, current the live one; do not edit by hand"}\n'
)

Progress = Callable[[int, int], None]
"""Called as ``progress(files_done, files_total)`` while a local release is written."""


# ----------------------------------------------------------------------------------------
# What a publish did


@dataclass
class PublishReport:
    """What :func:`publish` or :func:`rollback` did (or, with ``dry_run``, would do)."""

    target: str
    release: str
    """The live release after the command (the one that would be live, for a dry run)."""
    previous: str | None = None
    """The release that was live before."""
    noop: bool = False
    dry_run: bool = False
    rolled_back: bool = False
    files: int = 0
    copied: int = 0
    linked: int = 0
    bytes_total: int = 0
    bytes_copied: int = 0
    pruned: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def live_path(self) -> str:
        """Where the web server's root points: ``TARGET/current``."""
        return f"{self.target.rstrip('/')}/{CURRENT}"


# ----------------------------------------------------------------------------------------
# The built site and its content hash


@dataclass(frozen=True)
class SiteFile:
    rel: str
    path: str
    size: int
    sha256: str


@dataclass
class Site:
    root: Path
    dirs: list[str]
    files: list[SiteFile]
    digest: str

    @property
    def short_hash(self) -> str:
        return self.digest[:12]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def built_publication(root: Path | str) -> Publication:
    """The publication at ``root``, refused when its site was never built."""
    from .content import load_publication

    pub = load_publication(root)
    site = pub.site_dir
    if not site.is_dir() or not (site / "manifest.json").is_file():
        raise PublishError(
            "there is no built site to publish" + ("" if site.is_dir() else " (no _site/)"),
            path=site,
            fix=f"run `masthead build {pub.root}` first",
        )
    return pub


def whole_site(pub: Publication) -> Path:
    """The publication's built site, refused unless it is the whole of one build (read with
    the build lock held: a build may not swap it meanwhile)."""
    site = pub.site_dir
    problems = site_problems(site)
    if problems:
        raise PublishError(
            "the built site is not whole, so nothing was published: " + "; ".join(problems),
            path=site,
            fix=f"run `masthead build {pub.root}` (it builds a damaged site again in full), "
            "then publish",
        )
    return site


def read_site(site: Path) -> Site:
    """Every folder and file of the site with its SHA-256, and the site's content hash
    (names and contents only: rebuilding unchanged pages changes nothing)."""
    dirs: list[str] = []
    files: list[SiteFile] = []
    for rel, path, is_dir in _walk(str(site), ""):
        if is_dir:
            dirs.append(rel)
        else:
            size, digest = _hash_file(path)
            files.append(SiteFile(rel, path, size, digest))
    h = hashlib.sha256()
    for rel in dirs:
        h.update(f"d\0{rel}\n".encode())
    for f in files:
        h.update(f"f\0{f.rel}\0{f.size}\0{f.sha256}\n".encode())
    return Site(root=site, dirs=dirs, files=files, digest=h.hexdigest())


def _walk(top: str, prefix: str) -> Iterator[tuple[str, str, bool]]:
    with os.scandir(top) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        rel = f"{prefix}{entry.name}"
        if entry.is_dir():  # a symlink to a folder is published as a folder
            yield rel, entry.path, True
            yield from _walk(entry.path, rel + "/")
        elif entry.is_file():
            yield rel, entry.path, False


def _hash_file(path: str) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


# ----------------------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class LocalTarget:
    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class RemoteTarget:
    host: str
    """``host`` or ``user@host`` as ssh takes it (IPv6 addresses without brackets)."""
    path: str
    rsync_host: str
    """The host as rsync writes it (IPv6 addresses in brackets)."""

    def __str__(self) -> str:
        return f"{self.rsync_host}:{self.path}"


_REMOTE_RE = re.compile(r"^(?P<user>[^@/:\[]+@)?(?P<host>\[[^\]/]+\]|[^/:\[@]+):(?P<path>.*)$")


def parse_target(text: str) -> LocalTarget | RemoteTarget:
    """``/srv/bulletin`` (a folder here) or ``[user@]host:/srv/bulletin`` (over ssh), as
    rsync reads them: a colon before the first slash means a remote host."""
    if text.startswith("rsync://") or re.match(r"^[^/\[\]]+::", text):
        raise PublishError(
            f"{text}: rsync daemon targets are not supported (the live version is switched "
            "with a command run over ssh)",
            fix="use an ssh target, user@host:/path, or a mounted folder",
        )
    match = _REMOTE_RE.match(text)
    if not match:
        return LocalTarget(Path(text))
    path = match["path"]
    if not path.strip("/"):
        raise PublishError(
            f"{text}: give the folder on the host, e.g. {match['host']}:/srv/bulletin",
            fix="name the remote folder the web server's root lives in",
        )
    if path.startswith("-"):
        path = "./" + path  # never read as an option by the remote commands
    user = match["user"] or ""
    host = match["host"]
    target = RemoteTarget(host=user + host.strip("[]"), path=path, rsync_host=user + host)
    _refuse_option_host(text, target)
    return target


def _refuse_option_host(text: str, target: RemoteTarget) -> None:
    """A host such as ``-oProxyCommand=…`` would be read by ssh and rsync as an option
    (and run a command here): no host name or address starts with ``-``."""
    if target.host.startswith("-") or target.rsync_host.startswith("-"):
        raise PublishError(
            f"{text}: the host {target.host!r} starts with '-': ssh and rsync "
            "would read it as an option, not a host",
            fix="give the host's name or address, e.g. deploy@web1.example.org:/srv/bulletin "
            f"(a local folder whose name holds a colon: ./{text})",
        )


def _release_hash(release: str | None) -> str | None:
    match = _RELEASE_RE.match(release or "")
    return match[2] if match else None


def new_release_id(short_hash: str, existing: list[str]) -> str:
    """``<UTC time>-<hash>``, later than every existing release (even if the clock went
    back), so that releases sort by name in the order they were published."""
    now = int(time.time())
    stamps = [_release_epoch(r) for r in existing if _RELEASE_RE.match(r)]
    if stamps and max(stamps) >= now:
        now = max(stamps) + 1
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}-{short_hash}"


def _release_epoch(release: str) -> int:
    import calendar

    return calendar.timegm(time.strptime(release[:16], "%Y%m%dT%H%M%SZ"))


def _releases(names: list[str]) -> list[str]:
    """Complete releases among folder names, oldest first."""
    return sorted(n for n in names if _RELEASE_RE.match(n))


# ----------------------------------------------------------------------------------------
# The switch history: which releases were live, in order, and where --rollback goes

History = list[tuple[str, str]]
"""The events of ``.masthead-history``, oldest first: ``(kind, release)``, where kind is
``publish``, ``rollback`` or ``found`` (the live release of a target that had no history
yet). ``None`` in place of a history: the target has no history file."""

_EVENTS = ("publish", "rollback", "found")


def _history_line(kind: str, release: str) -> str:
    """One line of ``.masthead-history``: ``<UTC time> <kind> <release>``."""
    return f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {kind} {release}"


def _parse_history(lines: list[str]) -> History:
    events: History = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[1] in _EVENTS and _RELEASE_RE.match(parts[2]):
            events.append((parts[1], parts[2]))
    return events  # (a line that is not an event, e.g. cut short by a full disk, is skipped)


def _new_events(history: History | None, live: str | None, kind: str, release: str) -> History:
    """The events a switch to ``release`` appends; the first switch on a target published
    before the history was kept records the release it found live, so it can come back."""
    found: History = [("found", live)] if history is None and live is not None else []
    return [*found, (kind, release)]


def _live_stack(history: History, live: str | None) -> list[str]:
    """The releases that were live, oldest first, without those rolled back from."""
    stack: list[str] = []
    for kind, release in history:
        if kind == "rollback":
            _return_to(stack, release)
        else:
            stack.append(release)
    if live is not None and stack[-1:] != [live]:  # switched by hand, or its line was lost
        if live in stack:
            _return_to(stack, live)
        else:
            stack.append(live)
    return stack


def _return_to(stack: list[str], release: str) -> None:
    while stack and stack[-1] != release:
        stack.pop()
    if not stack:  # back to a release from before the history
        stack.append(release)


def _rollback_path(releases: list[str], live: str | None, history: History | None) -> list[str]:
    """The live release, then each release ``--rollback`` would go back to in turn: the
    ones that were live before it, then (before the history began) older ones by id."""
    if live is None:
        return []
    if history is None:  # a target published before the history was kept
        return [live, *reversed([r for r in releases if r < live])]
    kept = set(releases)
    stack = [r for r in _live_stack(history, live) if r in kept]
    recorded = {r for _, r in history} | set(stack)
    older = [r for r in releases if r < stack[0] and r not in recorded]
    return [*reversed(stack), *reversed(older)]


def _to_prune(releases: list[str], live: str, keep: int, history: History | None) -> list[str]:
    """The releases beyond the ``keep`` that matter most: the live one, the ones
    ``--rollback`` would go back to, then the others (rolled back from) newest first."""
    path = _rollback_path(releases, live, history)
    others = sorted((r for r in releases if r not in path), reverse=True)
    kept = set([*path, *others][:keep])
    return [r for r in releases if r not in kept]


def _previous(
    releases: list[str], live: str | None, history: History | None, target: object
) -> str:
    if live is None:
        raise PublishError(
            f"{target} has no live release to roll back from",
            fix="publish first: masthead publish DIR --to TARGET",
        )
    path = _rollback_path(releases, live, history)
    if len(path) < 2:
        raise PublishError(
            f"{target}: no earlier release to roll back to: none of the releases that were "
            f"live before the live one ({live}) is kept",
            fix="nothing to roll back to; publish the version you want instead",
        )
    return path[1]


def _check_keep(keep: int) -> None:
    if keep < 1:
        raise PublishError(
            f"--keep {keep}: at least the live release is kept",
            fix="use --keep 2 or more (the default is 5)",
        )


def _resolve_rsh(rsh: str | None) -> str:
    return rsh or os.environ.get(RSH_ENV) or "ssh"


# ----------------------------------------------------------------------------------------
# The commands


def publish(
    root: Path | str,
    to: str | Path,
    *,
    keep: int = DEFAULT_KEEP,
    dry_run: bool = False,
    rsh: str | None = None,
    progress: Progress | None = None,
    on_wait: Waiting | None = None,
) -> PublishReport:
    """Publish the built site of the publication at ``root`` to ``to`` (a folder, or
    ``[user@]host:/path`` over ssh), switching the live version atomically; keep the last
    ``keep`` releases. ``rsh`` (or ``MASTHEAD_RSH``) replaces ``ssh`` for remote targets.

    A build swaps ``_site/`` in one step; a publish reading it meanwhile would mix the two
    sites (or find the old one's files deleted under it). So a publish holds the build lock,
    shared (publishes to several hosts run side by side): it waits for a running build
    (``on_wait`` is told so), and a build waits for it."""
    started = time.perf_counter()
    _check_keep(keep)
    pub = built_publication(root)
    target = parse_target(str(to))
    if isinstance(target, LocalTarget):
        _refuse_inside_site(target.path, pub.site_dir)
    with (
        _disk_faults(pub.root, target),
        build_lock(pub.state_dir, role="publish", on_wait=on_wait),
    ):
        site = read_site(whole_site(pub))
        if isinstance(target, LocalTarget):
            with _disk_faults(target.path, target):
                report = _publish_local(site, target, keep=keep, dry_run=dry_run, progress=progress)
        else:
            rsh = _resolve_rsh(rsh)
            report = _publish_remote(site, target, keep=keep, dry_run=dry_run, rsh=rsh)
    report.seconds = time.perf_counter() - started
    return report


def rollback(to: str | Path, *, dry_run: bool = False, rsh: str | None = None) -> PublishReport:
    """Switch ``current`` back to the release published before the live one."""
    started = time.perf_counter()
    target = parse_target(str(to))
    if isinstance(target, LocalTarget):
        with _disk_faults(target.path, target):
            report = _rollback_local(target, dry_run=dry_run)
    else:
        report = _rollback_remote(target, dry_run=dry_run, rsh=_resolve_rsh(rsh))
    report.seconds = time.perf_counter() - started
    return report


@contextlib.contextmanager
def _disk_faults(path: Path, target: LocalTarget | RemoteTarget) -> Iterator[None]:
    """A full disk, a read-only one or a missing permission here is a message naming the
    path (the release being written is removed first: the live one was never touched)."""
    try:
        yield
    except OSError as exc:
        fault = disk_fault(
            exc,
            path=path,
            unchanged=f"the live release of {target} is as it was",
            error=PublishError,
        )
        if fault is None:
            raise
        raise fault from None


def _refuse_inside_site(target: Path, site: Path) -> None:
    resolved, site = target.resolve(), site.resolve()
    if resolved == site or site in resolved.parents:
        raise PublishError(
            "the target is inside the built site: each publish would publish the last one",
            path=target,
            fix="publish to a folder outside _site/, e.g. /srv/bulletin",
        )


# ----------------------------------------------------------------------------------------
# A local folder


def _publish_local(
    site: Site, target: LocalTarget, *, keep: int, dry_run: bool, progress: Progress | None
) -> PublishReport:
    root = target.path
    _check_local_target(root)
    with _locked(root, create=not dry_run):
        releases = _releases(_listdir(root / RELEASES))
        live = _local_live(root)
        report = _start_report(site, str(root), live)
        if report.noop:
            return report
        release = new_release_id(site.short_hash, releases)
        report.release, report.dry_run = release, dry_run
        history = _read_local_history(root)
        events = _new_events(history, live, "publish", release)
        previous = _load_filelist(root, live) if live else {}
        if dry_run:
            _count_local(site, root, live, previous, report)
            report.pruned = _to_prune(
                [*releases, release], release, keep, [*(history or []), *events]
            )
            return report
        _sweep_partials(root)
        partial = root / RELEASES / f"{PARTIAL}{release}"
        try:
            _write_release(site, root, live, previous, partial, report, progress)
            _save_filelist(root, release, site)
            _sync_filesystem(partial)
            os.rename(partial, root / RELEASES / release)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)  # (if killed: the next publish does)
            raise
        switch_current(root, release)
        _append_history_after_switch(root, events, release)
        report.pruned = _prune_local(root, release, keep, [*(history or []), *events])
        return report


def _start_report(site: Site, target: str, live: str | None) -> PublishReport:
    """The report of a publish before it writes anything: a no-op when the live release
    already holds the site."""
    report = PublishReport(target=target, release=live or "", previous=live)
    report.files, report.bytes_total = len(site.files), site.size
    report.noop = live is not None and _release_hash(live) == site.short_hash
    return report


def _count_local(
    site: Site,
    root: Path,
    live: str | None,
    previous: dict[str, tuple[int, str]],
    report: PublishReport,
) -> None:
    """What a dry run would copy and hard-link."""
    for f in site.files:
        if _linkable(root, live, previous, f) is None:
            report.copied += 1
            report.bytes_copied += f.size
        else:
            report.linked += 1


def _check_local_target(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise PublishError(
            "the target exists and is not a folder",
            path=root,
            fix="give a folder (new, empty, or one masthead publish made)",
        )
    if root.is_dir() and not (root / MARKER).is_file() and any(root.iterdir()):
        raise PublishError(
            f"this folder is not a masthead publish target (no {MARKER}) and is not empty: "
            "publishing would mix the site with what it holds",
            path=root,
            fix=f"publish to a new or empty folder; the web server's root is then {root}/{CURRENT}",
        )
    current = root / CURRENT
    if current.exists() and not current.is_symlink():
        raise PublishError(
            f"{CURRENT} is a real folder, not the symlink masthead publish switches",
            path=current,
            fix=f"move {current} away (e.g. into {root}/{RELEASES}/), then publish again",
        )


@contextlib.contextmanager
def _locked(root: Path, *, create: bool) -> Iterator[None]:
    """Mark the target (a new one) and hold its lock: one publish at a time per target."""
    marker = root / MARKER
    if not marker.exists():
        if not create:
            yield
            return
        root.mkdir(parents=True, exist_ok=True)
        (root / RELEASES).mkdir(exist_ok=True)
        tmp = root / f"{MARKER}.{os.getpid()}"
        tmp.write_text(_MARKER_TEXT, "utf-8")
        tmp.replace(marker)
    import fcntl

    with open(marker, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PublishError(
                "another masthead publish is writing to this target",
                path=root,
                fix="wait for it to finish, then run this command again",
            ) from None
        yield


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def _local_live(root: Path) -> str | None:
    """The live release's id, when ``current`` points at one."""
    try:
        link = os.readlink(root / CURRENT)
    except OSError:  # no current yet
        return None
    name = Path(link).name
    return name if _RELEASE_RE.match(name) and (root / RELEASES / name).is_dir() else None


def _load_filelist(root: Path, release: str) -> dict[str, tuple[int, str]]:
    try:
        data = json.loads((root / FILELISTS / f"{release}.json").read_text("utf-8"))
        return {rel: (int(size), str(sha)) for rel, (size, sha) in data["files"].items()}
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return {}  # (a release without a list: its files are compared by hashing them)


def _save_filelist(root: Path, release: str, site: Site) -> None:
    (root / FILELISTS).mkdir(exist_ok=True)
    data = {
        "release": release,
        "digest": site.digest,
        "files": {f.rel: [f.size, f.sha256] for f in site.files},
    }
    tmp = root / FILELISTS / f".{release}.json.{os.getpid()}"
    tmp.write_text(json.dumps(data, separators=(",", ":")), "utf-8")
    tmp.replace(root / FILELISTS / f"{release}.json")


def _linkable(
    root: Path, live: str | None, previous: dict[str, tuple[int, str]], f: SiteFile
) -> Path | None:
    """The live release's copy of an unchanged file (same path, same content), if any."""
    if live is None:
        return None
    old = root / RELEASES / live / f.rel
    known = previous.get(f.rel)
    if known is not None:
        return old if known == (f.size, f.sha256) and old.is_file() else None
    try:
        same = old.is_file() and _hash_file(str(old)) == (f.size, f.sha256)
    except OSError:
        return None
    return old if same else None


def _write_release(
    site: Site,
    root: Path,
    live: str | None,
    previous: dict[str, tuple[int, str]],
    partial: Path,
    report: PublishReport,
    progress: Progress | None,
) -> None:
    """Write the complete release into ``partial``: hard links to the live release's
    unchanged files, copies of the others. The live release is only ever read."""
    partial.mkdir(parents=True)
    for rel in site.dirs:
        (partial / rel).mkdir()
    total = len(site.files)
    for n, f in enumerate(site.files):
        if progress:
            progress(n, total)
        dest = partial / f.rel
        old = _linkable(root, live, previous, f)
        if old is not None and _hard_link(old, dest):
            report.linked += 1
            continue
        shutil.copy2(f.path, dest)
        report.copied += 1
        report.bytes_copied += f.size
    if progress:
        progress(total, total)


def _hard_link(source: Path, dest: Path) -> bool:
    try:
        os.link(source, dest)
    except OSError as exc:
        # Another file system, too many links, or links not allowed: copy instead.
        if exc.errno in (errno.EXDEV, errno.EMLINK, errno.EPERM, errno.ENOTSUP, errno.EACCES):
            return False
        raise
    return True


def _sync_filesystem(path: Path) -> None:
    """Flush the new release to disk before it goes live: after a power cut, ``current``
    never points at files that were still in memory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) == 0:
            return
    except (OSError, AttributeError):
        pass
    finally:
        os.close(fd)
    os.sync()


def switch_current(root: Path, release: str) -> None:
    """Point ``root/current`` at ``releases/<release>`` in one step: a new symlink is
    renamed over the old one (``rename(2)`` replaces it atomically)."""
    tmp = root / f".{CURRENT}.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.symlink(f"{RELEASES}/{release}", tmp)
        os.replace(tmp, root / CURRENT)
    except OSError as exc:
        fault = disk_fault(exc, path=root, unchanged="the live release is as it was")
        if fault is not None:
            raise PublishError(fault.message, path=fault.path, fix=fault.fix) from None
        raise PublishError(
            f"cannot switch {CURRENT} to releases/{release}: {exc.strerror or exc} (this file "
            "system may not hold symlinks, as mounted buckets often cannot)",
            path=root,
            fix="publish to a local folder and sync it to the host (docs/deploy.md)",
        ) from exc
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune_local(root: Path, live: str, keep: int, history: History) -> list[str]:
    doomed = _to_prune(_releases(_listdir(root / RELEASES)), live, keep, history)
    for release in doomed:
        shutil.rmtree(root / RELEASES / release, ignore_errors=True)
        (root / FILELISTS / f"{release}.json").unlink(missing_ok=True)
    kept = set(_listdir(root / RELEASES))
    for name in _listdir(root / FILELISTS):  # lists whose release is gone
        if name.endswith(".json") and name[:-5] not in kept:
            (root / FILELISTS / name).unlink(missing_ok=True)
    return doomed


def _read_local_history(root: Path) -> History | None:
    try:
        return _parse_history((root / HISTORY).read_text("utf-8").splitlines())
    except FileNotFoundError:
        return None


def _append_local_history(root: Path, events: History) -> None:
    """Append the switch just made (one write, then to disk: the next rollback reads it)."""
    text = "".join(_history_line(kind, release) + "\n" for kind, release in events)
    fd = os.open(root / HISTORY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _append_history_after_switch(root: Path, events: History, release: str) -> None:
    """Record a switch already made: a disk that refuses the line now must not be reported
    as a publish that left the live release as it was."""
    try:
        _append_local_history(root, events)
    except OSError as exc:
        fault = disk_fault(
            exc,
            path=root / HISTORY,
            unchanged=f"release {release} is live; only its line in {HISTORY} is missing "
            "(--rollback still goes back to the release live before it)",
            error=PublishError,
        )
        if fault is None:
            raise
        raise fault from None


def _sweep_partials(root: Path) -> None:
    """Releases left half-written by a publish that failed or was killed (we hold the
    target's lock: none is being written now)."""
    for name in _listdir(root / RELEASES):
        if name.startswith(PARTIAL):
            shutil.rmtree(root / RELEASES / name, ignore_errors=True)


def _rollback_local(target: LocalTarget, *, dry_run: bool) -> PublishReport:
    root = target.path
    if not (root / MARKER).is_file():
        raise PublishError(
            f"not a masthead publish target (no {MARKER})",
            path=root,
            fix="give the folder you published to with `masthead publish DIR --to …`",
        )
    with _locked(root, create=False):
        live = _local_live(root)
        history = _read_local_history(root)
        earlier = _previous(_releases(_listdir(root / RELEASES)), live, history, root)
        report = PublishReport(
            target=str(root), release=earlier, previous=live, rolled_back=True, dry_run=dry_run
        )
        if not dry_run:
            switch_current(root, earlier)
            _append_local_history(root, _new_events(history, live, "rollback", earlier))
        return report


# ----------------------------------------------------------------------------------------
# A remote folder: rsync into a new release, switch and prune with commands over ssh


@dataclass
class _RemoteState:
    state: str  # missing | empty | marked | foreign
    live: str | None
    releases: list[str]
    history: History | None = None
    locked_by: str | None = None
    """Who holds the target's lock, when a lock script found it taken."""


def _remote_shell(rsh: str, target: RemoteTarget, script: str, what: str) -> str:
    """Run a shell script on the target's host (``rsh -- host script``); its output."""
    argv = [*shlex.split(rsh), "--", target.host, script]  # (the host is never an option)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise PublishError(
            f"cannot run {argv[0]!r} to reach {target.host}",
            fix=f"install OpenSSH's client, or name the command with --rsh or {RSH_ENV}",
        ) from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise PublishError(
            f"{target}: {what} failed (exit status {done.returncode})"
            + (f": {detail[-1]}" if detail else ""),
            fix=f"check that `{rsh} {target.host} true` works and the folder is writable",
        )
    return done.stdout


def _state_lines() -> str:
    """Shell that prints the target's state (run in the target folder): one key=value a
    line, read by :func:`_read_state`."""
    return (
        f"if [ -f {MARKER} ]; then echo state=marked; "
        'elif [ -z "$(ls -A)" ]; then echo state=empty; exit 0; '
        "else echo state=foreign; exit 0; fi; "
        f"if [ -e {CURRENT} ] && [ ! -L {CURRENT} ]; then echo state=current-not-link; fi; "
        f'echo "live=$(readlink {CURRENT} 2>/dev/null)"; '
        f"ls -1A {RELEASES} 2>/dev/null | sed 's/^/release=/'; "
        f"if [ -f {HISTORY} ]; then echo history-file=yes; sed 's/^/history=/' {HISTORY}; fi"
    )


def _read_state(output: str, target: RemoteTarget) -> _RemoteState:
    fields: dict[str, list[str]] = {}
    for line in output.splitlines():
        key, _, value = line.partition("=")
        fields.setdefault(key, []).append(value)
    releases = _releases(fields.get("release", []))
    live = Path(fields.get("live", [""])[-1]).name or None
    history = _parse_history(fields.get("history", [])) if "history-file" in fields else None
    remote = _RemoteState(
        state=fields.get("state", ["missing"])[-1],
        live=live if live in releases else None,
        releases=releases,
        history=history,
        locked_by=fields["locked"][-1] if "locked" in fields else None,
    )
    _refuse_remote_state(remote, target)
    return remote


def _refuse_remote_state(remote: _RemoteState, target: RemoteTarget) -> None:
    if remote.state == "foreign":
        raise PublishError(
            f"{target} is not a masthead publish target (no {MARKER}) and is not empty",
            fix="publish to a new or empty folder on that host",
        )
    if remote.state == "current-not-link":
        raise PublishError(
            f"{target}/{CURRENT} is a real folder, not the symlink masthead publish switches",
            fix=f"move it away on the host (e.g. into {RELEASES}/), then publish again",
        )


def _probe_remote(rsh: str, target: RemoteTarget) -> _RemoteState:
    p = shlex.quote(target.path)
    script = f"if [ ! -e {p} ]; then echo state=missing; exit 0; fi; cd {p} || exit 1; "
    return _read_state(
        _remote_shell(rsh, target, script + _state_lines(), "reading the target"), target
    )


# The lock of a remote target is a folder: mkdir(2) either makes it or fails, atomically,
# with POSIX sh and coreutils only. Its file ``owner`` says who holds it and since when.


def _lock_owner() -> str:
    import getpass
    import secrets
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name (a container without a passwd entry)
        user = str(os.getuid())
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return f"{user}@{socket.gethostname()} pid {os.getpid()} since {since} ({secrets.token_hex(4)})"


def _lock_script(target: RemoteTarget, owner: str, *, prepare: bool) -> str:
    """Take the lock (or print who holds it), then, for a publish, mark the target and
    remove the partial releases of publishes that died: only once the lock is held, as
    no other publish can be writing one then. Prints the state read under the lock."""
    p, lock = shlex.quote(target.path), LOCK
    steps = ["set -e", f"mkdir -p {p}" if prepare else ":", f"cd {p}"]
    steps.append(
        f'if ! mkdir {lock} 2>/dev/null; then echo "locked=$(cat {lock}/owner 2>/dev/null)"; '
        "exit 0; fi"
    )
    steps.append(f"trap 'rm -rf {lock}' EXIT")  # a failure below releases the lock
    steps.append(f"printf '%s\\n' {shlex.quote(owner)} > {lock}/owner")
    if prepare:
        steps.append(f"[ -f {MARKER} ] || printf '%s' {shlex.quote(_MARKER_TEXT)} > {MARKER}")
        steps.append(f"mkdir -p {RELEASES}; rm -rf {RELEASES}/{PARTIAL}*")
    steps.append(_state_lines())
    steps.append("trap - EXIT")
    return "; ".join(steps)


def _unlock_script(target: RemoteTarget, owner: str) -> str:
    """Remove the lock if it is still ours (never another publish's)."""
    lock = LOCK
    return (
        f"cd {shlex.quote(target.path)} && "
        f'if [ "$(cat {lock}/owner 2>/dev/null)" = {shlex.quote(owner)} ]; '
        f"then rm -rf {lock}; fi"
    )


@contextlib.contextmanager
def _remote_lock(rsh: str, target: RemoteTarget, *, prepare: bool) -> Iterator[_RemoteState]:
    """Hold the target's lock on its host: one publish or rollback at a time. Yields the
    target's state, read under the lock. The lock is removed at the end, also on failure."""
    owner = _lock_owner()
    script = _lock_script(target, owner, prepare=prepare)
    output = _remote_shell(rsh, target, script, "locking the target")
    unlock = _unlock_script(target, owner)
    try:
        remote = _read_state(output, target)
        _refuse_locked(remote, target, rsh)
        yield remote
    except BaseException:
        with contextlib.suppress(PublishError):  # (the first failure is the one to report)
            _remote_shell(rsh, target, unlock, "unlocking the target")
        raise
    _remote_shell(rsh, target, unlock, "unlocking the target")


def _refuse_locked(remote: _RemoteState, target: RemoteTarget, rsh: str) -> None:
    if remote.locked_by is None:
        return
    lock = f"{target.path.rstrip('/')}/{LOCK}"
    raise PublishError(
        f"another masthead publish is writing to {target}: its lock {lock} is held by "
        f"{remote.locked_by or 'an unknown publish'}",
        fix="wait for it to finish, then run this command again; if no publish is running "
        f"(one was killed), remove the lock: {rsh} {target.host} rm -r {shlex.quote(lock)}",
    )


def _switch_script(
    target: RemoteTarget, release: str, events: History, *, from_partial: bool
) -> str:
    p, rel = shlex.quote(target.path), shlex.quote(f"{RELEASES}/{release}")
    steps = ["set -e", f"cd {p}"]
    if from_partial:
        steps.append(f"mv -T {shlex.quote(f'{RELEASES}/{PARTIAL}{release}')} {rel}")
    # ln -sfn makes the new link beside the live one; mv -T is rename(2): the switch.
    steps.append(f"ln -sfn {rel} {CURRENT}.tmp")
    steps.append(f"mv -T {CURRENT}.tmp {CURRENT}")
    lines = " ".join(shlex.quote(_history_line(kind, r)) for kind, r in events)
    steps.append(f"printf '%s\\n' {lines} >> {HISTORY}")
    return "; ".join(steps)


def _publish_remote(
    site: Site, target: RemoteTarget, *, keep: int, dry_run: bool, rsh: str
) -> PublishReport:
    remote = _probe_remote(rsh, target)
    unchanged = _start_report(site, str(target), remote.live)
    if unchanged.noop:
        return unchanged
    if dry_run:
        return _dry_run_remote(site, target, remote, keep=keep, rsh=rsh)
    with _remote_lock(rsh, target, prepare=True) as remote:
        report = _start_report(site, str(target), remote.live)
        if report.noop:  # (another publish put this site live meanwhile)
            return report
        release = new_release_id(site.short_hash, remote.releases)
        events = _new_events(remote.history, remote.live, "publish", release)
        history = [*(remote.history or []), *events]
        report.release = release
        report.pruned = _to_prune([*remote.releases, release], release, keep, history)
        _count_rsync(report, _rsync(site, target, release, remote.live, rsh=rsh, dry_run=False))
        script = _switch_script(target, release, events, from_partial=True)
        _remote_shell(rsh, target, script, "the switch")
        if report.pruned:
            doomed = " ".join(shlex.quote(f"{RELEASES}/{r}") for r in report.pruned)
            p = shlex.quote(target.path)
            _remote_shell(rsh, target, f"cd {p} && rm -rf {doomed}", "pruning old releases")
    return report


def _dry_run_remote(
    site: Site, target: RemoteTarget, remote: _RemoteState, *, keep: int, rsh: str
) -> PublishReport:
    """What a publish would do; changes nothing on the host and takes no lock."""
    report = _start_report(site, str(target), remote.live)
    release = new_release_id(site.short_hash, remote.releases)
    events = _new_events(remote.history, remote.live, "publish", release)
    report.release, report.dry_run = release, True
    report.pruned = _to_prune(
        [*remote.releases, release], release, keep, [*(remote.history or []), *events]
    )
    if remote.live is None:  # a new target: every file would be copied
        report.copied, report.bytes_copied = report.files, report.bytes_total
        return report
    _count_rsync(report, _rsync(site, target, release, remote.live, rsh=rsh, dry_run=True))
    return report


def _count_rsync(report: PublishReport, stats: dict[str, int]) -> None:
    report.copied = stats.get("transferred", 0)
    report.linked = max(0, report.files - report.copied)
    report.bytes_copied = stats.get("bytes", 0)


def _rsync(
    site: Site, target: RemoteTarget, release: str, live: str | None, *, rsh: str, dry_run: bool
) -> dict[str, int]:
    """rsync the site into ``releases/.partial-<release>/``, hard-linking what the live
    release already holds (``--link-dest`` is relative to the destination folder)."""
    # -rlpD is -a without -t, -g, -o. Without -t, and with --checksum: a rebuild gives
    # unchanged pages new modification times, and rsync hard-links (--link-dest) only files
    # whose preserved attributes all match; compared by content, as a local target does,
    # unchanged files stay hard links. Without -g -o: the files belong to the deploy user.
    # -D (devices, special files) is kept from -a; a built site holds neither.
    argv = ["rsync", "-rlpD", "--checksum", "--delete", "--stats", "-e", rsh]
    if live is not None:
        argv.append(f"--link-dest=../{live}")
    if dry_run:
        argv.append("--dry-run")
    destination = f"{target.path.rstrip('/')}/{RELEASES}/{PARTIAL}{release}/"
    argv += [f"{site.root}/", f"{target.rsync_host}:{destination}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise PublishError(
            "rsync is not installed here",
            fix="install it (Debian: apt install rsync) here and on the host",
        ) from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise PublishError(
            f"rsync to {target} failed (exit status {done.returncode})"
            + (f": {lines[-1]}" if lines else ""),
            fix="the live release is unchanged; fix the cause above and publish again",
        )
    return _rsync_stats(done.stdout)


def _rsync_stats(output: str) -> dict[str, int]:
    stats: dict[str, int] = {}
    for key, pattern in (
        ("transferred", r"Number of regular files transferred:\s*([\d,.]+)"),
        ("bytes", r"Total transferred file size:\s*([\d,.]+)"),
    ):
        match = re.search(pattern, output)
        if match:
            stats[key] = int(re.sub(r"[,.]", "", match[1]))
    return stats


def _rollback_remote(target: RemoteTarget, *, dry_run: bool, rsh: str) -> PublishReport:
    remote = _probe_remote(rsh, target)
    _require_marked(remote, target)
    if dry_run:
        return _rollback_report(target, remote, dry_run=True)
    with _remote_lock(rsh, target, prepare=False) as remote:
        _require_marked(remote, target)
        report = _rollback_report(target, remote, dry_run=False)
        events = _new_events(remote.history, remote.live, "rollback", report.release)
        script = _switch_script(target, report.release, events, from_partial=False)
        _remote_shell(rsh, target, script, "the switch")
    return report


def _require_marked(remote: _RemoteState, target: RemoteTarget) -> None:
    if remote.state != "marked":
        raise PublishError(
            f"{target} is not a masthead publish target (no {MARKER})",
            fix="give the target you published to with `masthead publish DIR --to …`",
        )


def _rollback_report(target: RemoteTarget, remote: _RemoteState, *, dry_run: bool) -> PublishReport:
    earlier = _previous(remote.releases, remote.live, remote.history, target)
    return PublishReport(
        target=str(target), release=earlier, previous=remote.live, rolled_back=True, dry_run=dry_run
    )


__all__ = [
    "DEFAULT_KEEP",
    "LocalTarget",
    "PublishReport",
    "RemoteTarget",
    "parse_target",
    "publish",
    "read_site",
    "rollback",
    "switch_current",
]
