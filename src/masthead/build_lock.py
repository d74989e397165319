"""One build of a publication at a time: an OS lock on ``.masthead/build.lock``.

``flock(2)`` is held by an open file description and released by the kernel when the last
descriptor of it closes, so a build that is killed (even by SIGKILL) never leaves the lock
stuck. Each build opens the file itself, so two builds in one process (the editor's app
runs each in a worker thread) exclude each other as two processes do. The holder writes its
pid and start time into the file, for the message of a build that has to wait.
"""

from __future__ import annotations

import contextlib
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
    state_dir: Path, *, wait: float | None = None, on_wait: Waiting | None = None
) -> Iterator[None]:
    """Hold the publication's build lock for the ``with`` block.

    ``wait``: None waits as long as the other build runs; a number of seconds gives up after
    that long (0: at once) with :class:`BuildBusy` naming the holder."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if not _try_lock(fd):
            holder = _holder(path)
            if wait is not None and wait <= 0:
                raise _busy(path, holder)
            if on_wait is not None:
                on_wait(f"Waiting for another build of this publication ({holder}) to finish…")
            _wait_for(fd, path, wait)
        _write_holder(fd)
        yield
    finally:
        os.close(fd)  # releases the lock


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_for(fd: int, path: Path, wait: float | None) -> None:
    if wait is None:
        fcntl.flock(fd, fcntl.LOCK_EX)  # (Ctrl-C interrupts it: Python retries EINTR)
        return
    deadline = time.monotonic() + wait
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            raise _busy(path, _holder(path), waited=wait)
        time.sleep(_POLL_SECONDS)


def _busy(path: Path, holder: str, *, waited: float = 0) -> BuildBusy:
    after = f" (waited {waited:g} s)" if waited else ""
    return BuildBusy(
        f"another build of this publication is running ({holder}){after}",
        path=path,
        fix="wait for it to finish, then build again; if it hangs, stop that process: the "
        "lock is released when it ends, however it ends",
    )


def _holder(path: Path) -> str:
    try:
        text = path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    return text or "pid unknown"


def _write_holder(fd: int) -> None:
    """Say who holds the lock, for a build that has to wait. A full disk may refuse even
    these few bytes: the lock is held all the same, and the build goes on to say so."""
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
    text = f"pid {os.getpid()}, started at {started} on {socket.gethostname()}\n"
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)


__all__ = ["LOCK_FILE", "build_lock"]
