"""Move a publication's database to another server: ``masthead db copy``.

Every table is read from the source in primary-key order, in one read-only snapshot, and
written to the destination in one transaction (a failure leaves the destination as it was);
then the destination is read back and compared with what was read: the row count and a
SHA-256 over every row of every table, each value in one canonical form (timestamps as UTC,
so SQLite's text and PostgreSQL's ``timestamptz`` hash alike; text keys in byte order on
both). The copy is done only when both match.

The destination is created at the current schema version (its own ``schema_version``) and
must hold no rows: a copy never merges two lists. Sequences (PostgreSQL) are moved past the
copied ids, so the next subscriber gets a new id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from ..errors import StoreError
from . import driver_url, get_engine
from .migrations import LATEST, current_version, migrate
from .schema import metadata, schema_version

CHUNK = 5_000

Progress = Callable[[str, int], None]
"""Called with (table name, rows copied so far) as a copy goes on."""


@dataclass
class TableCopy:
    """One table's figures after the copy."""

    name: str
    source_rows: int = 0
    target_rows: int = 0
    source_sum: str = ""
    target_sum: str = ""

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_sum == self.target_sum


@dataclass
class CopyReport:
    source: str
    target: str
    tables: list[TableCopy] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    @property
    def rows(self) -> int:
        return sum(t.target_rows for t in self.tables)

    @property
    def checksum(self) -> str:
        """One SHA-256 over every table's checksum: the figure to compare by eye."""
        whole = hashlib.sha256()
        for t in self.tables:
            whole.update(f"{t.name}:{t.target_rows}:{t.target_sum}\n".encode())
        return whole.hexdigest()


def shown(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL SQLAlchemy cannot parse is shown as given, it has no password
        return url


def copied_tables() -> list[Table]:
    """Every table but the version stamp, parents before children."""
    return [t for t in metadata.sorted_tables if t is not schema_version]


def _canonical(value: Any) -> str:
    if value is None:
        return "\x00"
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


def _rows(conn: Connection, table: Table) -> Iterator[Any]:
    """Every row in primary-key order, the same order on every database: text keys compare
    byte by byte (SQLite's BINARY, PostgreSQL's "C"), not by a locale's collation, which
    orders ``a.b@x.org`` and ``aa@x.org`` differently."""
    order = [
        c.collate("C") if conn.dialect.name == "postgresql" and c.type.python_type is str else c
        for c in table.primary_key.columns
    ]
    result = conn.execution_options(yield_per=CHUNK).execute(select(table).order_by(*order))
    yield from result


class RowDigest:
    """The SHA-256 of a table's rows in key order, each value in canonical form."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.rows = 0

    def add(self, row: Any) -> None:
        self.digest.update("\x1f".join(_canonical(v) for v in row).encode("utf-8"))
        self.digest.update(b"\x1e")
        self.rows += 1

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def table_checksum(conn: Connection, table: Table) -> tuple[int, str]:
    """(rows, SHA-256 of every row in key order, each value in canonical form)."""
    digest = RowDigest()
    for row in _rows(conn, table):
        digest.add(row)
    return digest.rows, digest.hexdigest()


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One consistent, read-only view of the source for the whole copy: a read transaction
    that does not take SQLite's write lock (a running ``masthead serve`` can still write), or
    PostgreSQL's ``REPEATABLE READ READ ONLY`` (every table as of one moment)."""
    if engine.dialect.name == "postgresql":
        options: dict[str, Any] = {
            "isolation_level": "REPEATABLE READ",
            "postgresql_readonly": True,
        }
    else:
        options = {"sqlite_begin": "DEFERRED"}
    with engine.connect().execution_options(**options) as conn, conn.begin():
        yield conn


def copy_database(source: str, target: str, progress: Progress | None = None) -> CopyReport:
    """Copy every row of the database at ``source`` into the empty one at ``target``."""
    import time

    started = time.perf_counter()
    if driver_url(source) == driver_url(target):
        raise StoreError(
            "--from and --to are the same database", fix="name the new database after --to"
        )
    report = CopyReport(shown(source), shown(target))
    try:
        src = get_engine(source)
        with src.connect() as conn:
            version = current_version(conn)
    except OperationalError as exc:
        raise StoreError(
            f"cannot open the source database {shown(source)}: {exc.orig}",
            fix="check the --from URL (sqlite:///absolute/path/to/masthead.db)",
        ) from exc
    if version == 0:
        raise StoreError(
            f"the source database {shown(source)} has no Masthead tables",
            fix="check the --from URL: PUB/.masthead/masthead.db is the default database",
        )
    if version != LATEST:
        raise StoreError(
            f"the source database is at schema version {version}, this Masthead writes "
            f"version {LATEST}",
            fix=f"run `masthead db upgrade` on it first (MASTHEAD_DATABASE_URL={shown(source)})",
        )
    try:
        dst = get_engine(target)
        migrate(dst)
    except OperationalError as exc:
        raise StoreError(
            f"cannot open the destination database {shown(target)}: {exc.orig}",
            fix="check the --to URL and that the server is running and the role may create "
            "tables (createdb -O USER DBNAME)",
        ) from exc
    tables = copied_tables()
    with dst.begin() as out:
        busy = [t.name for t in tables if out.execute(select(func.count()).select_from(t)).scalar()]
        if busy:
            raise StoreError(
                f"the destination database already holds rows in {', '.join(busy)}",
                fix="copy into a new, empty database (a copy never merges two lists)",
            )
        sums: dict[str, RowDigest] = {}
        with snapshot(src) as conn:  # the rows copied are the rows summed
            for table in tables:
                sums[table.name] = _copy_table(conn, out, table, progress)
        if out.dialect.name == "postgresql":
            _move_sequences(out, tables)
    with dst.connect() as out:  # read back what was committed
        for table in tables:
            got_rows, got_digest = table_checksum(out, table)
            source = sums[table.name]
            report.tables.append(
                TableCopy(table.name, source.rows, got_rows, source.hexdigest(), got_digest)
            )
    report.seconds = time.perf_counter() - started
    return report


def _copy_table(
    conn: Connection, out: Connection, table: Table, progress: Progress | None
) -> RowDigest:
    """Copy one table's rows; the digest of the rows read."""
    names = [c.name for c in table.columns]
    batch: list[dict[str, Any]] = []
    n = 0
    digest = RowDigest()
    for row in _rows(conn, table):
        digest.add(row)
        batch.append(dict(zip(names, row, strict=True)))
        if len(batch) >= CHUNK:
            out.execute(table.insert(), batch)
            n += len(batch)
            batch = []
            if progress is not None:
                progress(table.name, n)
    if batch:
        out.execute(table.insert(), batch)
        n += len(batch)
    if progress is not None:
        progress(table.name, n)
    return digest


def _move_sequences(out: Connection, tables: list[Table]) -> None:
    for table in tables:
        key = list(table.primary_key.columns)
        if len(key) != 1 or not key[0].autoincrement or key[0].type.python_type is not int:
            continue
        out.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{key[0].name}'), "
                f"COALESCE((SELECT MAX({key[0].name}) FROM {table.name}), 0) + 1, false)"
            )
        )
