"""A copy of the SQLite database before each send, and ``masthead db restore``.

Before a send starts, :func:`backup_before_send` writes a consistent copy of the
publication's SQLite file with ``VACUUM INTO`` (it reads every page, so a damaged file is
found here, before anything is mailed) into ``.masthead/backups/``, keeping the newest
:data:`KEEP`. :func:`restore` puts the newest (or a named) copy back, keeping the file it
replaces beside it. PostgreSQL is left to its own tools (``pg_dump``, base backups): a
shared server has an operator who runs them.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from ..errors import StoreError

if TYPE_CHECKING:
    from ..model import Publication
    from . import Store

KEEP = 3
"""How many copies ``.masthead/backups/`` keeps (the newest)."""

PREFIX = "masthead-"


def backups_dir(pub: Publication) -> Path:
    return pub.state_dir / "backups"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database or an in-memory one)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return None if parsed.database == ":memory:" else Path(parsed.database)


def backups(pub: Publication) -> list[Path]:
    """The copies, oldest first."""
    folder = backups_dir(pub)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{PREFIX}*.db") if p.is_file())


def backup_before_send(store: Store, pub: Publication, label: str) -> Path | None:
    """Copy the SQLite database to ``.masthead/backups/`` (None on other databases).

    Raises :class:`~masthead.errors.DatabaseDamaged` when the file cannot be read whole:
    better found now than after half a send."""
    if sqlite_file(store.url) is None:
        return None
    folder = backups_dir(pub)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    safe_label = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:40]
    final = folder / f"{PREFIX}{stamp}-{safe_label}.db"
    tmp = folder / f".{final.name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    from . import damaged

    raw = store.engine.raw_connection()  # VACUUM runs outside a transaction
    try:
        raw.driver_connection.execute("VACUUM INTO ?", (str(tmp),))
    except sqlite3.DatabaseError as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, sqlite3.OperationalError) and "malformed" not in str(exc):
            raise StoreError(
                f"could not copy the database before the send: {exc}",
                fix=f"check that {folder} is writable and the disk has room, then send again",
            ) from exc
        raise damaged(pub, store.url, exc) from exc
    finally:
        raw.close()
    os.chmod(tmp, 0o600)  # personal data: the owner's alone, as the database itself
    os.replace(tmp, final)
    for old in backups(pub)[:-KEEP]:
        old.unlink(missing_ok=True)
    return final


@dataclass(frozen=True)
class Restored:
    database: Path
    backup: Path
    kept_as: Path | None


def _check_copy(path: Path) -> None:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not a usable database copy: {exc}",
            fix="name another copy with --from (masthead db restore --list shows them)",
        ) from exc
    if verdict != "ok":
        raise StoreError(
            f"{path} is damaged too: {verdict}",
            fix="name another copy with --from (masthead db restore --list shows them)",
        )


def restore(pub: Publication, url: str, backup: Path | None = None) -> Restored:
    """Put ``backup`` (default: the newest copy) in place of the SQLite database, keeping
    the file it replaces as ``masthead.db.replaced-<time>``. Stop ``masthead serve`` and
    sends first: they hold the old file open (``masthead db restore`` refuses while a send
    of this machine runs)."""
    target = sqlite_file(url)
    if target is None:
        raise StoreError(
            "masthead db restore restores the SQLite file; this publication's database is "
            "on a server",
            fix="restore PostgreSQL with its own tools (pg_restore of your pg_dump, or a base "
            "backup)",
        )
    if backup is None:
        found = backups(pub)
        if not found:
            raise StoreError(
                f"there is no copy in {backups_dir(pub)} (one is made before each send)",
                fix="restore from your own backup with --from FILE",
            )
        backup = found[-1]
    if not backup.is_file():
        raise StoreError(f"no such file: {backup}", fix="masthead db restore --list shows copies")
    _check_copy(backup)
    from . import dispose_engines

    dispose_engines()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    aside = target.with_name(f"{target.name}.replaced-{stamp}")
    n = 1
    while aside.exists():  # never over a file kept before
        aside = target.with_name(f"{target.name}.replaced-{stamp}-{n}")
        n += 1
    kept: Path | None = None
    if target.exists():
        kept = aside
        os.replace(target, aside)
    for suffix in ("-wal", "-shm", "-journal"):  # never replayed into the restored copy
        side = target.with_name(target.name + suffix)
        if side.exists():
            os.replace(side, aside.with_name(aside.name + suffix))
    tmp = target.with_name(f".{target.name}.restoring")
    shutil.copyfile(backup, tmp)
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    return Restored(database=target, backup=backup, kept_as=kept)
