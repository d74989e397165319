"""A remote folder target, over ssh: rsync into a new release, then switch ``current`` and
prune with shell commands run on the host, under a lock folder on the host."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import PublishError
from .built_site import Site
from .common import (
    _MARKER_TEXT,
    CURRENT,
    HISTORY,
    LOCK,
    MARKER,
    PARTIAL,
    RELEASES,
    RSH_ENV,
    PublishReport,
    RemoteTarget,
    _start_report,
)
from .releases import (
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
