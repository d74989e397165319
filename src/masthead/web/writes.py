"""Writes of the public endpoints on SQLite: queued, and with checkpoints off the request path.

SQLite has one writer at a time. Left to itself, a process that finds the database locked
polls SQLite's busy handler, which sleeps 1, 2, 5, … up to 100 ms between tries: under a
burst of one-click unsubscribes (after a send) those sleeps become the slowest answers.
:class:`WriteQueue` makes writers wait their turn on a lock instead, woken the moment it is
free: a thread lock within a process and, for ``--workers`` or several instances on one
machine, ``flock`` on a file beside the database.

A committing connection also copies the write-ahead log into the database file now and then
(an automatic checkpoint, with an ``fsync`` that can take tens of milliseconds) while every
other writer waits. :func:`checkpoint_in_background` turns that off for this process's
connections and checkpoints twice a second from a thread of its own: the bulk while writers
go on (``PASSIVE``), then the few pages written meanwhile while they wait.

PostgreSQL needs none of this: its writers lock rows, not the database.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Engine, event

try:
    import fcntl
except ImportError:  # Windows: one process per database file, the thread lock is enough
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("masthead.serve")

CHECKPOINT_SECONDS = 0.5


class WriteQueue:
    """A lock held around each write transaction: a thread lock, plus ``flock`` on
    ``lock_path`` (other processes) when one is given."""

    def __init__(self, lock_path: Path | None = None) -> None:
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        if lock_path is not None and fcntl is not None:
            self._fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            weakref.finalize(self, os.close, self._fd)

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._thread_lock.release()
                raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


def sqlite_path(engine: Engine) -> Path | None:
    """The database file of a SQLite engine (None: not SQLite, or in memory)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def write_queue(engine: Engine) -> WriteQueue | None:
    """The queue for writes to ``engine``'s database; None when it needs none (PostgreSQL)."""
    if engine.dialect.name != "sqlite":
        return None
    path = sqlite_path(engine)
    return WriteQueue(path.with_name(path.name + ".write-lock") if path else None)


def checkpoint_in_background(
    engine: Engine, queue: WriteQueue, interval: float = CHECKPOINT_SECONDS
) -> None:
    """No automatic checkpoints on this process's connections to ``engine`` (a SQLite file);
    a daemon thread checkpoints every ``interval`` seconds instead, in two steps: the bulk
    while writers go on, then, holding ``queue``, the few pages written meanwhile, so the
    log is complete and the next writer starts it again from the beginning (a log that is
    never complete would only grow)."""
    if sqlite_path(engine) is None:
        return

    @event.listens_for(engine, "connect")
    def _no_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA wal_autocheckpoint = 0")
        cursor.close()

    engine.dispose()  # connections opened before the listener get it too, when reopened

    def checkpoint() -> None:
        # The DBAPI connection itself: outside a transaction (the engine's would begin
        # one, and a checkpoint cannot run inside it).
        raw = engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").close()
        finally:
            raw.close()

    def run() -> None:
        while True:
            time.sleep(interval)
            try:
                checkpoint()
                with queue:
                    checkpoint()
            except Exception as exc:  # a locked or vanished database: try again later
                log.warning("WAL checkpoint failed: %s", exc)

    threading.Thread(target=run, name="masthead-checkpoint", daemon=True).start()
