"""One build of a publication at a time: an OS lock on ``.masthead/build.lock``.

``flock(2)`` is held by an open file description and released by the kernel when the last
descriptor of it closes, so a build that is killed (even by SIGKILL) never leaves the lock
stuck. Each build opens the file itself, so two builds in one process (the editor's app
runs each in a worker thread) exclude each other as two processes do. The holder writes
what it is, its pid and start time into the file, for the message of one that has to wait.

A build holds the lock alone; ``masthead publish``, which reads ``_site/`` and must not see
it swapped half-way, holds it shared: publishes to several hosts run side by side, and a
build waits for them (and they for it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import BuildBusy

LOCK_FILE = "build.lock"
_POLL_SECONDS = 0.05

Waiting = Callable[[str], None]
"""Called once, with a line to show, when the build has to wait for another."""


@contextlib.contextmanager
def build_lock(
    state_dir: Path,
    *,
    wait: float | None = None,
    on_wait: Waiting | None = None,
    role: str = "build",
) -> Iterator[None]:
    """Hold the publication's build lock for the ``with`` block: alone for a build, shared
    for any other ``role`` (a publish, which only reads the site).

    ``wait``: None waits as long as the holder runs; a number of seconds gives up after
    that long (0: at once) with :class:`BuildBusy` naming the holder."""
    path = state_dir / LOCK_FILE
    fd = _open(path, shared=role != "build")
    if fd is None:  # a publish where nobody may write .masthead/: nobody can build there
        yield
        return
    mode = fcntl.LOCK_EX if role == "build" else fcntl.LOCK_SH
    try:
        if not _try_lock(fd, mode):
            holder = _holder(path, role)
            if wait is not None and wait <= 0:
                raise _busy(path, holder)
            if on_wait is not None:
                on_wait(f"Waiting for {holder} to finish…")
            _wait_for(fd, mode, path, wait, role)
        _write_holder(fd, role)
        yield
    finally:
        os.close(fd)  # releases the lock


# Never through a symlink: the holder's line is written into the file (truncating it).
_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW


def _open(path: Path, *, shared: bool) -> int | None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | _FLAGS, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _not_a_file(path) from None
        if not shared or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
    try:
        return os.open(path, os.O_RDONLY | _FLAGS)  # (flock needs no write access)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _not_a_file(path) from None
        raise


def _not_a_file(path: Path) -> BuildBusy:
    return BuildBusy(
        "the build lock is a symbolic link, not a file of its own",
        path=path,
        fix=f"remove it (rm {path}); the next build makes a new one",
    )


def _try_lock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_for(fd: int, mode: int, path: Path, wait: float | None, role: str) -> None:
    if wait is None:
        fcntl.flock(fd, mode)  # (Ctrl-C interrupts it: Python retries EINTR)
        return
    deadline = time.monotonic() + wait
    while not _try_lock(fd, mode):
        if time.monotonic() >= deadline:
            raise _busy(path, _holder(path, role), waited=wait)
        time.sleep(_POLL_SECONDS)


def _busy(path: Path, holder: str, *, waited: float = 0) -> BuildBusy:
    after = f" (waited {waited:g} s)" if waited else ""
    return BuildBusy(
        f"{holder} is running{after}",
        path=path,
        fix="wait for it to finish, then build again; if it hangs, stop that process: the "
        "lock is released when it ends, however it ends",
    )


def _holder(path: Path, role: str) -> str:
    """Who holds the lock, as ``role`` is told: "another build of this publication (pid
    4711, started at …)", "a publish of this publication (…)"."""
    try:
        text = path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    holder_role, _, about = text.partition(": ")
    if not about:
        holder_role, about = "build", "pid unknown"
    article = "another" if holder_role == role else "a"
    return f"{article} {holder_role} of this publication ({about})"


def _write_holder(fd: int, role: str) -> None:
    """Say who holds the lock, for one that has to wait. A full disk may refuse even these
    few bytes: the lock is held all the same, and the build goes on to say so."""
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
    text = f"{role}: pid {os.getpid()}, started at {started} on {socket.gethostname()}\n"
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)


__all__ = ["LOCK_FILE", "build_lock"]
