"""The database knows what it is: a lost database is never taken for a new, empty list.

SQLite opens a missing or truncated file as an empty database, and an empty database
looks exactly like a publication that has no subscribers yet. Taken at its word, the next
``masthead send`` says "nothing to send", and re-importing the list then mails every
reader who already had the issue a second copy.

So each database gets an identity when a publication first uses it: a random id kept in
its ``settings`` table and, beside the publication, in ``.masthead/database.id`` (one line
per database URL). Opening a database that the marker says had an id, but that is now
empty, or has another id, raises :class:`~masthead.errors.DatabaseLost` with the way back:
``masthead db restore`` (the copy made before the last send), or deleting the marker to
start a new, empty list on purpose.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, select

from ..errors import DatabaseLost
from .schema import settings

if TYPE_CHECKING:
    from ..model import Publication

DATABASE_ID = "database_id"
"""The ``settings`` row that holds the database's identity."""

MARKER = "database.id"
"""The file in ``.masthead/`` that remembers the identity of each database URL used."""


def marker_path(pub: Publication) -> Path:
    return pub.state_dir / MARKER


def _shown(url: str) -> str:
    from .copy import shown

    return shown(url)


UNREADABLE = "(an unreadable marker)"
"""What :func:`remembered` gives for every URL when the marker exists but cannot be read:
a database was there, its id is not known."""


class _Unreadable(dict):  # type: ignore[type-arg]
    def get(self, key: object, default: object = None) -> str:  # type: ignore[override]
        return UNREADABLE


def _key(pub: Publication, url: str) -> str:
    """The marker's key for ``url``: the publication's own SQLite file by its place in the
    publication (the folder may move), any other database by its URL (password hidden)."""
    if url == f"sqlite:///{(pub.state_dir / 'masthead.db').resolve()}":
        return "sqlite:///.masthead/masthead.db"
    return _shown(url)


def remembered(pub: Publication) -> dict[str, str]:
    """Marker key (see :func:`_key`) → the database id this publication last saw there."""
    path = marker_path(pub)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return _Unreadable()
    if not isinstance(data, dict):
        return _Unreadable()
    return {str(k): str(v) for k, v in data.items()}


def _remember(pub: Publication, url: str, database_id: str) -> None:
    known = remembered(pub)
    if isinstance(known, _Unreadable):
        known = {}
    if known.get(_key(pub, url)) == database_id:
        return
    known[_key(pub, url)] = database_id
    path = marker_path(pub)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{MARKER}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_id(conn: Connection) -> str | None:
    return conn.execute(select(settings.c.value).where(settings.c.name == DATABASE_ID)).scalar()


def _restore_fix(pub: Publication, url: str) -> str:
    start_over = f"if you really mean to start a new, empty list, delete {marker_path(pub)}"
    if not url.startswith("sqlite"):
        return (
            "restore the database from its own backup (pg_restore of your pg_dump, or a base "
            f"backup; Masthead's own restore command is for SQLite files); {start_over}"
        )
    return (
        f"restore the last good copy with `masthead db restore {pub.root}` (made before each "
        f"send, in .masthead/backups/), or from your own backup; {start_over}"
    )


def check_not_lost(pub: Publication, url: str) -> None:
    """Refuse an empty database where this publication had one (call before creating
    tables in it)."""
    known = remembered(pub).get(_key(pub, url))
    if known:
        raise DatabaseLost(
            f"the database {_shown(url)} is empty or missing, but this publication had one "
            f"there (id {known}); it was deleted, truncated or replaced. Taken for a new list, "
            "it would mail every reader who already had an issue again",
            fix=_restore_fix(pub, url),
        )


def ensure_identity(pub: Publication, engine: Engine, url: str, *, write: bool = True) -> None:
    """Give the database an id if it has none, remember it beside the publication, and
    refuse a database whose id is not the one remembered for its URL."""
    with engine.connect() as conn:
        found = read_id(conn)
    known = remembered(pub).get(_key(pub, url))
    if found is None:
        if not write:
            return
        from . import dialect_insert

        # A database from before identities (or one whose settings were lost) takes the id
        # remembered for its URL: it holds data, so it is no new list.
        with engine.begin() as conn:
            conn.execute(
                dialect_insert(conn.dialect.name, settings)
                .values(
                    name=DATABASE_ID, value=known or uuid.uuid4().hex, set_by=socket.gethostname()
                )
                .on_conflict_do_nothing()
            )
            found = read_id(conn)
    if known and found != known:
        raise DatabaseLost(
            f"the database {_shown(url)} has id {found}, but this publication's database there "
            f"had id {known}: it was replaced by another publication's",
            fix=_restore_fix(pub, url),
        )
    if write and found:
        _remember(pub, url, found)
