"""A small versioned migration scheme: upgrades never lose a subscriber.

The ``schema_version`` table records every version applied. A new database is created
from the current table declarations (:mod:`masthead.store.schema`) and stamped with
:data:`LATEST`; an existing one runs each step above its version, in order, inside one
transaction, so a failed upgrade leaves the database as it was.

To change the schema: edit :mod:`~masthead.store.schema`, then append a step to
:data:`STEPS` that turns version N-1 into N with additive statements (``ALTER TABLE … ADD
COLUMN``, ``CREATE TABLE``, ``CREATE INDEX``, copying data) — never a ``DROP`` of data.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, func, inspect, select, text

from .schema import metadata, schema_version, utcnow

Step = Callable[[Connection], None]


def _v1_create_everything(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


def _v2_rate_limits(conn: Connection) -> None:
    """Version 2 (several machines): the rate limit shared by every sender, and the index
    senders claim from."""
    from .schema import outbox_pending, rate_limits

    rate_limits.create(conn, checkfirst=True)
    outbox_pending.create(conn, checkfirst=True)


def _v3_settings(conn: Connection) -> None:
    """Version 3: the settings every machine must agree on (the signing secret's
    fingerprint)."""
    from .schema import settings

    settings.create(conn, checkfirst=True)


def _v4_send_editions(conn: Connection) -> None:
    """Version 4: each send's email as it was when the send started."""
    from .schema import send_editions

    send_editions.create(conn, checkfirst=True)


STEPS: dict[int, Step] = {
    1: _v1_create_everything,
    2: _v2_rate_limits,
    3: _v3_settings,
    4: _v4_send_editions,
}
"""Version → the step that brings the database from the version before up to it."""

LATEST = max(STEPS)

MIGRATION_LOCK = 0x6D617374  # "mast": the advisory lock held while upgrading PostgreSQL


def current_version(conn: Connection) -> int:
    """The database's schema version (0: an empty database)."""
    if not inspect(conn).has_table(schema_version.name):
        return 0
    return conn.execute(select(func.max(schema_version.c.version))).scalar() or 0


def migrate(engine: Engine) -> int:
    """Bring the database up to :data:`LATEST`; return the version it is at now.

    Runs in one (write-locking) transaction, so two processes upgrading at once do not
    both apply a step.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # SQLite's BEGIN IMMEDIATE serialises upgrades; PostgreSQL needs a lock of its own
            # (two servers starting at once would both CREATE TABLE).
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        version = current_version(conn)
        if version == 0:
            metadata.create_all(conn, checkfirst=True)
            conn.execute(schema_version.insert().values(version=LATEST, applied_at=utcnow()))
            return LATEST
        for target in range(version + 1, LATEST + 1):
            STEPS[target](conn)
            conn.execute(schema_version.insert().values(version=target, applied_at=utcnow()))
        return max(version, LATEST)
