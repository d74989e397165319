"""Storage: subscribers, consent, suppressions, the outbox of each send, bounces.

SQLAlchemy Core over SQLite by default (``PUB/.masthead/masthead.db``, never under
``_site/``), or any database named by ``database_url`` in ``masthead.toml`` or the
environment variable ``MASTHEAD_DATABASE_URL``.

SQLite runs in WAL mode with a busy timeout, and every ``engine.begin()`` transaction
starts with ``BEGIN IMMEDIATE``: it takes the write lock up front, so two processes
that read then write (claiming outbox rows, say) queue instead of failing with
"database is locked". For a long read that should not hold the lock, use
:meth:`Store.read`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError

from ..errors import DatabaseDamaged, SchemaBehind, StoreError
from . import schema
from .migrations import LATEST, current_version, migrate
from .schema import (
    bounce_events,
    consent_events,
    metadata,
    outbox,
    rate_limits,
    send_editions,
    sends,
    settings,
    subscribers,
    suppressions,
    utcnow,
)

if TYPE_CHECKING:
    from ..model import Publication

__all__ = [
    "LATEST",
    "Store",
    "bounce_events",
    "consent_events",
    "current_version",
    "database_error_line",
    "database_url",
    "dialect_insert",
    "dispose_engines",
    "driver_url",
    "get_engine",
    "metadata",
    "migrate",
    "open_store",
    "outbox",
    "rate_limits",
    "schema",
    "send_editions",
    "sends",
    "settings",
    "subscribers",
    "suppressions",
    "utcnow",
]

BUSY_TIMEOUT_MS = 30_000

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def database_url(pub: Publication) -> str:
    """The database URL: MASTHEAD_DATABASE_URL, else ``database_url``, else SQLite in
    ``.masthead/masthead.db``."""
    url = os.environ.get("MASTHEAD_DATABASE_URL") or pub.config.database_url
    if url:
        return url
    return f"sqlite:///{(pub.state_dir / 'masthead.db').resolve()}"


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is deferred).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _create_private_file(path: str) -> None:
    """Create an empty database file readable by its owner only (it holds personal data;
    SQLite gives its -wal and -shm files the same permissions)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def driver_url(url: str) -> str:
    """The URL SQLAlchemy should open: ``postgresql://`` and ``postgres://`` (as every
    PostgreSQL tool writes them) mean the psycopg 3 driver, which Masthead installs."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def get_engine(url: str) -> Engine:
    """One engine per URL for the life of the process."""
    url = driver_url(url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            try:
                parsed = make_url(url)
            except ArgumentError as exc:
                raise StoreError(
                    f"database_url is not a database URL: {url!r}",
                    fix='write e.g. "sqlite:///path/to/masthead.db" or '
                    '"postgresql+psycopg://user@host/dbname"',
                ) from exc
            if parsed.get_backend_name() == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    _create_private_file(parsed.database)
                engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
                _sqlite_setup(engine)
            else:
                try:
                    engine = create_engine(url, pool_pre_ping=True)
                except ModuleNotFoundError as exc:
                    raise StoreError(
                        f"no driver for {parsed.drivername}: {exc.name} is not installed",
                        fix=f"pip install {exc.name}, or write postgresql://… (psycopg 3)",
                    ) from exc
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine's connections (tests; before forking workers)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


IDENTITY_SINCE = 3
"""The schema version whose ``settings`` table holds the database's identity."""


def damaged(pub: Publication, url: str, exc: Exception) -> DatabaseDamaged:
    """The error for a database whose file is corrupt or is not a database at all."""
    return DatabaseDamaged(
        f"the database {make_url(url).render_as_string(hide_password=True)} is damaged: "
        f"{database_error_line(exc)}",
        fix=f"restore the last good copy with `masthead db restore {pub.root}` (made before "
        "each send, in .masthead/backups/); the damaged file is kept beside it",
    )


def database_error_line(exc: Exception) -> str:
    """The first line of a database error, from the driver's own exception when there is
    one (for a probe's answer or a message on one line)."""
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0][:200]


def dialect_insert(dialect_name: str, table: Any) -> Any:
    """``INSERT`` with the dialect's ``ON CONFLICT`` clauses (PostgreSQL's or SQLite's)."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


@dataclass(frozen=True)
class Store:
    """An open, migrated database of one publication."""

    engine: Engine
    url: str
    pub: Publication | None = None

    tables = schema
    """The table declarations (``store.tables.subscribers`` …)."""

    def begin(self) -> Any:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite): ``with store.begin() as c:``."""
        return self.engine.begin()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction that does not take SQLite's write lock."""
        conn_ = self.engine.connect().execution_options(sqlite_begin="DEFERRED")
        with conn_ as conn, conn.begin():
            yield conn

    def version(self) -> int:
        with self.read() as conn:
            return current_version(conn)


def open_store(
    pub: Publication, *, upgrade: bool | None = None, allow_behind: bool = False
) -> Store:
    """Open the publication's database.

    ``upgrade``: True migrates to :data:`LATEST` (``masthead db upgrade``); False never
    changes the schema; None (the default) creates the tables of an empty database, and
    upgrades an older one only on SQLite, which is one machine's own file. A shared database
    (PostgreSQL) is upgraded only by ``masthead db upgrade``: a machine running a newer
    Masthead must not change the schema under the older ones still serving and sending (a
    rolling upgrade). Opening an older shared database then raises
    :class:`~masthead.errors.SchemaBehind`, unless ``allow_behind`` (``masthead serve``,
    which starts and reports itself unready on ``/readyz`` until the upgrade).
    """
    from .identity import check_not_lost, ensure_identity

    url = database_url(pub)
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            version = current_version(conn)
            empty = version == 0 and not inspect(conn).get_table_names()
        if empty:
            check_not_lost(pub, url)  # an emptied file is not a new list
        if upgrade or (upgrade is None and (version == 0 or engine.dialect.name == "sqlite")):
            version = migrate(engine)
        if version >= IDENTITY_SINCE:
            ensure_identity(pub, engine, url, write=upgrade is not False)
    except OperationalError as exc:
        raise StoreError(
            f"cannot open the database {make_url(url).render_as_string(hide_password=True)}: "
            f"{exc.orig}",
            fix="check database_url / MASTHEAD_DATABASE_URL and that the server is running",
        ) from exc
    except DatabaseError as exc:
        raise damaged(pub, url, exc) from exc
    if version > LATEST:
        raise StoreError(
            f"the database is at schema version {version}, newer than this Masthead "
            f"understands ({LATEST})",
            fix="upgrade Masthead (pip install -U masthead)",
        )
    if upgrade is None and 0 < version < LATEST and not allow_behind:
        raise SchemaBehind(
            f"the database {make_url(url).render_as_string(hide_password=True)} is at schema "
            f"version {version}; this Masthead needs version {LATEST}",
            fix=f"run `masthead db upgrade {pub.root}` once, from any machine (the services "
            "of the older Masthead keep working until they are upgraded too)",
        )
    return Store(engine=engine, url=url, pub=pub)
