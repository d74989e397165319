"""A local folder target: write the release (hard links to the live release's unchanged
files, copies of the others), switch ``current``, record the switch, prune."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..errors import PublishError, disk_fault
from .built_site import Site, SiteFile, _hash_file
from .common import (
    _MARKER_TEXT,
    CURRENT,
    FILELISTS,
    HISTORY,
    MARKER,
    PARTIAL,
    RELEASES,
    LocalTarget,
    Progress,
    PublishReport,
    _start_report,
)
from .releases import (
    _RELEASE_RE,
    History,
    _history_line,
    _new_events,
    _parse_history,
    _previous,
    _releases,
    _to_prune,
    new_release_id,
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
