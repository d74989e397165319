"""The subscriber list: adding, importing, confirming, unsubscribing, suppressing.

Rules (the README states them):

- One person is on the list once: addresses are compared in lower case (``email_key``).
- Every change of consent is recorded in ``consent_events`` with its time, its source
  (import, form, cli, email, api) and, for web requests, the IP address.
- Without prior consent a new address is ``pending`` until its owner follows the signed
  link in the confirmation email (double opt-in); only ``active`` subscribers are mailed.
- The suppression list (unsubscribed, hard-bounced, complained, manual) is keyed by
  address, outlives the subscriber row, and is never lifted by an import or by the
  editor: only the address's owner confirming a new subscription lifts it.
"""

from __future__ import annotations

import csv
import importlib
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from ..errors import SubscriberError
from ..subscriber_status import LIST_STATUSES, SUBSCRIBER_STATUSES
from . import Store
from .addresses import MAX_NAME_LENGTH, InvalidAddress, checked_name, email_key, normalise_email
from .schema import (
    SUPPRESSION_REASONS,
    consent_events,
    subscribers,
    suppressions,
    utcnow,
)

# Statements the one-click unsubscribe runs by the thousand, built once: building a statement
# costs more than running it on SQLite.
_GET_BY_ID = select(subscribers).where(subscribers.c.id == bindparam("subscriber_id"))
_INSERT_CONSENT = consent_events.insert()
_SET_STATUS = (
    update(subscribers)
    .where(subscribers.c.id == bindparam("subscriber_id"))
    .where(subscribers.c.status != bindparam("new_status"))
    .values(status=bindparam("new_status"), updated_at=bindparam("now"))
)
_SUPPRESS_ONCE: dict[str, Any] = {}

_STATUS_FOR_REASON = {
    "unsubscribed": "unsubscribed",
    "manual": "unsubscribed",
    "hard-bounce": "bounced",
    "complaint": "complained",
}
_ACTION_FOR_REASON = {
    "unsubscribed": "unsubscribe",
    "manual": "suppress",
    "hard-bounce": "bounce",
    "complaint": "complaint",
}


@dataclass(frozen=True)
class Subscriber:
    """One row of the list."""

    id: int
    email: str
    name: str
    language: str | None
    status: str
    created_at: datetime
    confirmed_at: datetime | None
    suppressed: str | None = None
    """The suppression reason, if the address is suppressed."""

    @classmethod
    def from_row(cls, row: Row[Any], suppressed: str | None = None) -> Subscriber:
        return cls(
            id=row.id,
            email=row.email,
            name=row.name,
            language=row.language,
            status=row.status,
            created_at=row.created_at,
            confirmed_at=row.confirmed_at,
            suppressed=suppressed,
        )


def record_consent(
    conn: Connection,
    subscriber_id: int,
    action: str,
    source: str,
    *,
    ip: str | None = None,
    detail: str | None = None,
    at: datetime | None = None,
) -> None:
    """Append one event to the subscriber's consent history."""
    conn.execute(
        _INSERT_CONSENT,
        {
            "subscriber_id": subscriber_id,
            "action": action,
            "source": source,
            "ip": ip,
            "detail": detail,
            "at": at or utcnow(),
        },
    )


def may_be_mailed() -> ColumnElement[bool]:
    """Who may be mailed, as a condition on ``subscribers``: ``active`` subscribers whose
    address is not suppressed. The one statement of the rule: the list and the sender's
    outbox both select with it."""
    return and_(
        subscribers.c.status == "active",
        ~exists().where(suppressions.c.email_key == subscribers.c.email_key),
    )


def recipients_select() -> Select[Any]:
    """The subscribers who may be mailed (:func:`may_be_mailed`), in the order they were
    added."""
    return select(subscribers).where(may_be_mailed()).order_by(subscribers.c.id)


def suppression_reason(conn: Connection, email: str) -> str | None:
    return conn.execute(
        select(suppressions.c.reason).where(suppressions.c.email_key == email_key(email))
    ).scalar()


def suppressed_since(conn: Connection, email: str) -> datetime | None:
    """When ``email`` was put on the suppression list, or None if it is not on it."""
    return conn.execute(
        select(suppressions.c.at).where(suppressions.c.email_key == email_key(email))
    ).scalar()


def find(conn: Connection, email: str) -> Row[Any] | None:
    """The subscriber row for ``email`` (any case), or None."""
    return conn.execute(
        select(subscribers).where(subscribers.c.email_key == email_key(email))
    ).first()


def get(conn: Connection, subscriber_id: int) -> Row[Any] | None:
    return conn.execute(_GET_BY_ID, {"subscriber_id": subscriber_id}).first()


def _check_language(language: str | None) -> str | None:
    if not language:
        return None
    language = language.strip()
    if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", language):
        raise ValueError(
            f'language must be a BCP 47 tag such as "en" or "fa", got {language[:40]!r}'
        )
    return language


# ----------------------------------------------------------------------------------------
# Adding one address


@dataclass(frozen=True)
class AddResult:
    subscriber: Subscriber
    created: bool
    needs_confirmation: bool
    """True when a confirmation email should be sent now."""


def add(
    store: Store,
    email: str,
    *,
    name: str = "",
    language: str | None = None,
    confirmed: bool = False,
    source: str = "cli",
    ip: str | None = None,
) -> AddResult:
    """Add one address from the editor (``cli``) or a sign-up form (``form``).

    ``confirmed`` records consent obtained before (the subscriber is ``active`` at once);
    otherwise the subscriber is ``pending`` and needs a confirmation email. The editor
    cannot add a suppressed address as active (:class:`SubscriberError`); a sign-up form
    can, as pending: its owner's confirmation is a new opt-in.
    """
    try:
        address = normalise_email(email)
    except InvalidAddress as exc:
        raise SubscriberError(f"{email!r} is not a valid address: {exc}") from None
    try:
        language = _check_language(language)
    except ValueError as exc:
        raise SubscriberError(str(exc)) from None
    try:
        name = checked_name(name)
    except ValueError as exc:
        raise SubscriberError(
            str(exc), fix=f"shorten the name to {MAX_NAME_LENGTH} characters or fewer"
        ) from None
    try:
        return _add(store, address, name, language, confirmed, source, ip)
    except IntegrityError:
        # The same address signed up on another server between our look-up and our insert
        # (PostgreSQL; SQLite's write lock serialises): once more, it is on the list now.
        return _add(store, address, name, language, confirmed, source, ip)


def _add(
    store: Store,
    address: str,
    name: str,
    language: str | None,
    confirmed: bool,
    source: str,
    ip: str | None,
) -> AddResult:
    with store.begin() as conn:
        reason = suppression_reason(conn, address)
        row = find(conn, address)
        if reason and source != "form":
            raise SubscriberError(
                f"{address} is suppressed ({reason}) and is never mailed again",
                fix="the address's owner can subscribe again through the sign-up form",
            )
        if row is not None:
            if source == "form" and row.status != "active":
                # A new sign-up: back to pending until confirmed (suppression stays).
                conn.execute(
                    update(subscribers)
                    .where(subscribers.c.id == row.id)
                    .values(
                        status="pending",
                        name=name or row.name,
                        language=language or row.language,
                        updated_at=utcnow(),
                    )
                )
                record_consent(conn, row.id, "subscribe", source, ip=ip, detail="signed up again")
                return AddResult(Subscriber.from_row(get(conn, row.id), reason), False, True)
            if source == "form":
                return AddResult(Subscriber.from_row(row, reason), False, False)
            raise SubscriberError(
                f"{address} is already on the list ({row.status})",
                fix="`masthead subscribers list` shows it",
            )
        now = utcnow()
        new_id = conn.execute(
            subscribers.insert().values(
                email=address,
                email_key=email_key(address),
                name=name,
                language=language,
                status="active" if confirmed else "pending",
                created_at=now,
                confirmed_at=now if confirmed else None,
                updated_at=now,
            )
        ).inserted_primary_key[0]
        detail = "consent obtained before (--confirmed)" if confirmed else "awaiting confirmation"
        record_consent(conn, new_id, "subscribe", source, ip=ip, detail=detail, at=now)
        return AddResult(Subscriber.from_row(get(conn, new_id), reason), True, not confirmed)


# ----------------------------------------------------------------------------------------
# CSV import


@dataclass(frozen=True)
class BadRow:
    line: int
    email: str
    reason: str


@dataclass
class ImportReport:
    imported: int = 0
    """How many subscribers the import added."""
    to_confirm: list[Subscriber] = field(default_factory=list)
    """The subscribers added as pending (an import without ``confirmed``): each needs a
    confirmation email. (A confirmed import of a million keeps no list in memory.)"""
    bad: list[BadRow] = field(default_factory=list)


def _read_csv(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    try:
        text = path.read_text("utf-8-sig")
    except FileNotFoundError:
        raise SubscriberError("no such file", path=path) from None
    except UnicodeDecodeError as exc:
        raise SubscriberError(
            f"not UTF-8 text (byte {exc.start})", path=path, fix="save the CSV as UTF-8"
        ) from None
    # The separator is the one the header row uses most (names may hold ";" or ",").
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=lambda c: (first_line.count(c), c == ","))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise SubscriberError("the file is empty", path=path, fix="add a header row") from None
    except csv.Error as exc:
        raise SubscriberError(
            f"the header row cannot be read: {_csv_problem(exc)}",
            path=path,
            line=reader.line_num,
            fix="the first row names the columns: email, and optionally name, language",
        ) from None
    if "email" not in header:
        raise SubscriberError(
            f"no `email` column in the header row (found: {', '.join(header) or 'nothing'})",
            path=path,
            line=1,
            fix="the first row names the columns: email, and optionally name, language",
        )

    def rows() -> Iterator[tuple[int, dict[str, str] | str]]:
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # this row is bad; the reader goes on with the next line
                yield reader.line_num, f"unreadable row: {_csv_problem(exc)}"
                continue
            if not any(v.strip() for v in values):
                continue
            cells = (from_spreadsheet(v) for v in values)
            yield reader.line_num, dict(zip(header, cells, strict=False))

    return header, rows()


def _csv_problem(exc: csv.Error) -> str:
    """The csv module's complaint in words an editor can act on."""
    if "field limit" in str(exc):
        return (
            f"a field is longer than {csv.field_size_limit():,} characters, the most a CSV "
            "field may hold (an unclosed quote mark makes the rest of the file one field)"
        )
    return str(exc)


def _pending(
    subscriber_id: int, email: str, name: str, language: str | None, now: datetime
) -> Subscriber:
    """A subscriber an import has just added as pending (to be sent a confirmation)."""
    return Subscriber(
        id=subscriber_id,
        email=email,
        name=name,
        language=language,
        status="pending",
        created_at=now,
        confirmed_at=None,
    )


def _candidates(
    rows: Iterable[tuple[int, dict[str, str] | str]], report: ImportReport
) -> Iterator[tuple[int, str, str, str | None]]:
    """(line, address, name, language) of each well-formed row, once per address; the
    others go to ``report.bad`` with their reason."""
    seen: dict[str, int] = {}
    for line, row in rows:
        if isinstance(row, str):  # a row the csv module could not read: the reason
            report.bad.append(BadRow(line, "", row))
            continue
        raw = (row.get("email") or "").strip()
        try:
            address = normalise_email(raw)
        except InvalidAddress as exc:
            report.bad.append(BadRow(line, raw[:320], f"invalid address: {exc}"))
            continue
        try:
            language = _check_language(row.get("language"))
        except ValueError as exc:
            report.bad.append(BadRow(line, address, f"invalid language: {exc}"))
            continue
        try:
            name = checked_name(row.get("name"))
        except ValueError as exc:
            report.bad.append(BadRow(line, address, f"name too long: {exc}"))
            continue
        key = email_key(address)
        if key in seen:
            report.bad.append(BadRow(line, address, f"duplicate of line {seen[key]}"))
            continue
        seen[key] = line
        yield line, address, name, language


def import_csv(
    store: Store, path: Path, *, confirmed: bool = False, batch: int = 1000
) -> ImportReport:
    """Import a CSV file (header row: ``email``, optional ``name``, ``language``).

    Each bad row is reported with its line number and reason (invalid address, duplicate
    within the file, already on the list, suppressed); the rest are imported.
    """
    _, rows = _read_csv(path)
    report = ImportReport()
    detail_base = f"{path.name}: " + (
        "consent obtained before (--confirmed)" if confirmed else "awaiting confirmation"
    )
    if store.engine.dialect.name == "postgresql":
        _import_postgresql(store, _candidates(rows, report), report, confirmed, detail_base)
        report.bad.sort(key=lambda b: b.line)
        return report
    candidates = list(_candidates(rows, report))
    for start in range(0, len(candidates), batch):
        chunk = candidates[start : start + batch]
        keys = [email_key(c[1]) for c in chunk]
        with store.begin() as conn:
            on_list = dict(
                conn.execute(
                    select(subscribers.c.email_key, subscribers.c.status).where(
                        subscribers.c.email_key.in_(keys)
                    )
                ).all()
            )
            suppressed = dict(
                conn.execute(
                    select(suppressions.c.email_key, suppressions.c.reason).where(
                        suppressions.c.email_key.in_(keys)
                    )
                ).all()
            )
            now = utcnow()
            status = "active" if confirmed else "pending"
            fresh: list[tuple[int, str, str, str, str | None]] = []
            for (line, address, name, language), key in zip(chunk, keys, strict=True):
                if key in suppressed:
                    report.bad.append(BadRow(line, address, f"suppressed ({suppressed[key]})"))
                elif key in on_list:
                    report.bad.append(
                        BadRow(line, address, f"already on the list ({on_list[key]})")
                    )
                else:
                    fresh.append((line, address, key, name, language))
            if not fresh:
                continue
            # Many rows per statement (executemany): an import of 100,000 takes seconds.
            conn.execute(
                subscribers.insert(),
                [
                    {
                        "email": address,
                        "email_key": key,
                        "name": name,
                        "language": language,
                        "status": status,
                        "created_at": now,
                        "confirmed_at": now if confirmed else None,
                        "updated_at": now,
                    }
                    for _, address, key, name, language in fresh
                ],
            )
            new_ids = dict(
                conn.execute(
                    select(subscribers.c.email_key, subscribers.c.id).where(
                        subscribers.c.email_key.in_([f[2] for f in fresh])
                    )
                ).all()
            )
            conn.execute(
                consent_events.insert(),
                [
                    {
                        "subscriber_id": new_ids[key],
                        "action": "import",
                        "source": "import",
                        "ip": None,
                        "detail": f"{detail_base}, line {line}",
                        "at": now,
                    }
                    for line, _, key, _, _ in fresh
                ],
            )
            report.imported += len(fresh)
            if not confirmed:
                report.to_confirm.extend(
                    _pending(new_ids[key], address, name, language, now)
                    for _, address, key, name, language in fresh
                )
    report.bad.sort(key=lambda b: b.line)
    return report


_PG_IMPORT = """
WITH added AS (
    INSERT INTO subscribers
        (email, email_key, name, language, status, created_at, confirmed_at, updated_at,
         soft_bounces)
    SELECT email, email_key, name, language, %(status)s, %(now)s, %(confirmed_at)s, %(now)s, 0
    FROM import_rows r
    WHERE NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email_key = r.email_key)
    ORDER BY line
    ON CONFLICT (email_key) DO NOTHING
    RETURNING id, email_key
), consent AS (
    INSERT INTO consent_events (subscriber_id, action, source, ip, detail, at)
    SELECT added.id, 'import', 'import', NULL, %(detail)s || ', line ' || r.line, %(now)s
    FROM added JOIN import_rows r USING (email_key)
)
SELECT {returned}
"""
_PG_COUNT = "count(*) FROM added"
_PG_ROWS = "added.id, r.email, r.name, r.language FROM added JOIN import_rows r USING (email_key)"


def _import_postgresql(
    store: Store,
    candidates: Iterable[tuple[int, str, str, str | None]],
    report: ImportReport,
    confirmed: bool,
    detail_base: str,
) -> None:
    """The rows of an import in one transaction, streamed through ``COPY`` into a
    temporary table as they are checked (PostgreSQL takes them in while Python reads on),
    then one ``INSERT … SELECT`` for the subscribers and their consent records: a
    million rows in under a minute. Rows on the list or suppressed are reported as on the
    other databases; a sign-up that arrives meanwhile wins (``ON CONFLICT DO NOTHING``)."""
    now = utcnow()
    status = "active" if confirmed else "pending"
    with store.begin() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("SET LOCAL work_mem = '256MB'")  # sort and join in memory
        cursor.execute(
            "CREATE TEMPORARY TABLE import_rows (line integer, email text, email_key text, "
            "name text, language text) ON COMMIT DROP"
        )
        with cursor.copy(
            "COPY import_rows (line, email, email_key, name, language) FROM STDIN"
        ) as copy:
            for line, address, name, language in candidates:
                copy.write_row((line, address, email_key(address), name, language))
        cursor.execute("ANALYZE import_rows")
        cursor.execute(
            "SELECT r.line, r.email, x.reason FROM import_rows r "
            "JOIN suppressions x USING (email_key)"
        )
        suppressed = {line: (email, reason) for line, email, reason in cursor}
        for line, (email, reason) in suppressed.items():
            report.bad.append(BadRow(line, email, f"suppressed ({reason})"))
        cursor.execute(
            "SELECT r.line, r.email, s.status FROM import_rows r "
            "JOIN subscribers s USING (email_key)"
        )
        for line, email, on_list in cursor.fetchall():
            if line not in suppressed:
                report.bad.append(BadRow(line, email, f"already on the list ({on_list})"))
        cursor.execute(
            _PG_IMPORT.format(returned=_PG_COUNT if confirmed else _PG_ROWS),
            {
                "status": status,
                "now": now,
                "confirmed_at": now if confirmed else None,
                "detail": detail_base,
            },
        )
        if confirmed:
            report.imported = cursor.fetchone()[0]
            added = []
        else:
            added = sorted(cursor.fetchall())
            report.imported = len(added)
    with store.engine.connect() as conn:  # the planner's figures for the new rows
        conn.execute(text("ANALYZE subscribers, consent_events"))
        conn.commit()
    report.to_confirm.extend(
        _pending(subscriber_id, address, name, language, now)
        for subscriber_id, address, name, language in added
    )


# ----------------------------------------------------------------------------------------
# Listing and export


def iter_subscribers(store: Store, status: str | None = None) -> Iterator[Subscriber]:
    """Every subscriber (or those with ``status``; "suppressed" selects suppressed
    addresses), in the order they were added."""
    query = (
        select(subscribers, suppressions.c.reason)
        .outerjoin(suppressions, suppressions.c.email_key == subscribers.c.email_key)
        .order_by(subscribers.c.id)
    )
    if status == "suppressed":
        query = query.where(suppressions.c.reason.is_not(None))
    elif status is not None:
        if status not in SUBSCRIBER_STATUSES:
            raise SubscriberError(
                f"unknown status {status!r}",
                fix=f"use one of: {', '.join(LIST_STATUSES)}",
            )
        query = query.where(subscribers.c.status == status)
    with store.read() as conn:
        for row in conn.execute(query):
            yield Subscriber.from_row(row, row.reason)


def counts(store: Store) -> dict[str, int]:
    """How many subscribers have each status, plus ``suppressed`` addresses."""
    with store.read() as conn:
        result = dict(
            conn.execute(
                select(subscribers.c.status, func.count()).group_by(subscribers.c.status)
            ).all()
        )
        result["suppressed"] = conn.execute(select(func.count()).select_from(suppressions)).scalar()
    return result


EXPORT_COLUMNS = ["email", "name", "language", "status", "created_at", "confirmed_at", "suppressed"]

_PIECE = r"((?:^|[;,|\t\r\n])[^\S\t\r\n]*)"
"""Where a spreadsheet may start a cell: the cell's start, or after a separator a spreadsheet
may split on although the cell is quoted (``;`` ``,`` ``|`` tab, a line break), then spaces
(some trim them)."""
_TRIGGER = r"(?='*[=+\-@\t\r\n])"
"""What runs as a formula there (OWASP: = + - @ tab CR; LF too), behind any ``'`` already
(so that a cell quoted by hand reads back exactly)."""
_FORMULA = re.compile(_PIECE + _TRIGGER)
_ESCAPED_FORMULA = re.compile(_PIECE + "'" + _TRIGGER)


def spreadsheet_safe(value: str) -> str:
    """``value`` as an exported cell: one ``'`` before each piece a spreadsheet would run as a
    formula, at the cell's start and after every ``;`` ``,`` ``|`` tab or line break (a
    spreadsheet opened with ``;`` as its separator splits ``Bob;=HYPERLINK(…)`` there), so a
    name from the public sign-up form stays text. :func:`from_spreadsheet` undoes it."""
    return _FORMULA.sub(r"\1'", value)


def from_spreadsheet(value: str) -> str:
    """A cell as ``import`` reads it: each ``'`` :func:`spreadsheet_safe` put before a
    formula-like piece is taken off (only there: ``'quoted'`` stays as it is)."""
    return _ESCAPED_FORMULA.sub(r"\1", value)


def export_csv(store: Store, out: io.TextIOBase | Any, status: str | None = None) -> int:
    """Write the list as CSV (same columns ``import`` reads, plus status and dates); a
    cell a spreadsheet would run as a formula is written as text (:func:`spreadsheet_safe`),
    and every cell is quoted, so a spreadsheet that honours quotes never splits one."""
    csv.writer(out, lineterminator="\n").writerow(EXPORT_COLUMNS)  # plain words: no quotes
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    n = 0
    for s in iter_subscribers(store, status):
        cells = [
            s.email,
            s.name,
            s.language or "",
            s.status,
            s.created_at.isoformat(timespec="seconds"),
            s.confirmed_at.isoformat(timespec="seconds") if s.confirmed_at else "",
            s.suppressed or "",
        ]
        writer.writerow([spreadsheet_safe(c) for c in cells])
        n += 1
    return n


# ----------------------------------------------------------------------------------------
# Changes of consent


def suppress_address(
    conn: Connection,
    email: str,
    reason: str,
    *,
    source: str,
    ip: str | None = None,
    detail: str | None = None,
) -> int | None:
    """Put ``email`` on the suppression list (inside ``conn``'s transaction) and set its
    subscriber's status; return the subscriber id, if it is on the list. Idempotent: an
    address already suppressed keeps its first reason."""
    if reason not in SUPPRESSION_REASONS:
        raise SubscriberError(
            f"unknown reason {reason!r}", fix=f"use one of: {', '.join(SUPPRESSION_REASONS)}"
        )
    now = utcnow()
    _insert_suppression(conn, email_key(email), reason, now)
    row = find(conn, email)
    if row is None:
        return None
    _set_status(conn, row.id, reason, source=source, ip=ip, detail=detail, now=now)
    return row.id


def _insert_suppression(conn: Connection, key: str, reason: str, now: datetime) -> bool:
    """Add ``key`` to the suppression list unless it is on it (the first reason stays);
    True if it was added. One statement where the database has ``ON CONFLICT DO
    NOTHING``, so two requests suppressing one address at once cannot collide."""
    dialect = conn.dialect.name
    statement = _SUPPRESS_ONCE.get(dialect)
    if statement is None:
        if dialect in ("sqlite", "postgresql"):
            insert = importlib.import_module(f"sqlalchemy.dialects.{dialect}").insert
            # RETURNING, not rowcount: an INSERT's rowcount is -1 through psycopg, which
            # cost every one-click unsubscribe an extra query.
            statement = (
                insert(suppressions)
                .on_conflict_do_nothing(index_elements=["email_key"])
                .returning(suppressions.c.email_key)
            )
        else:
            statement = False
        _SUPPRESS_ONCE[dialect] = statement
    values = {"email_key": key, "reason": reason, "at": now}
    if statement is False:
        if conn.execute(
            select(suppressions.c.reason).where(suppressions.c.email_key == key)
        ).first():
            return False
        conn.execute(suppressions.insert(), values)
        return True
    return conn.execute(statement, values).first() is not None


def _set_status(
    conn: Connection,
    subscriber_id: int,
    reason: str,
    *,
    source: str,
    ip: str | None,
    detail: str | None,
    now: datetime,
) -> None:
    """The status that goes with a suppression ``reason``, and a consent event if it
    changed (one conditional UPDATE: of two requests at once, one records the change)."""
    status = _STATUS_FOR_REASON[reason]
    changed = conn.execute(
        _SET_STATUS, {"subscriber_id": subscriber_id, "new_status": status, "now": now}
    ).rowcount
    if changed:
        action = _ACTION_FOR_REASON[reason]
        record_consent(conn, subscriber_id, action, source, ip=ip, detail=detail, at=now)


def suppress(
    store: Store, email: str, reason: str = "manual", *, source: str = "cli", detail: str = ""
) -> int | None:
    """Suppress an address (on the list or not): it is never mailed again."""
    try:
        address = normalise_email(email)
    except InvalidAddress:
        address = email.strip()  # suppressing a malformed address is harmless
    with store.begin() as conn:
        return suppress_address(conn, address, reason, source=source, detail=detail or None)


def unsubscribe(
    store: Store, subscriber_id: int, *, source: str, ip: str | None = None
) -> Subscriber | None:
    """Unsubscribe by id (one-click link, mailto): suppressed at once. None if unknown."""
    with store.begin() as conn:
        row = get(conn, subscriber_id)
        if row is None:
            return None
        return unsubscribe_row(conn, row, source=source, ip=ip)


def unsubscribe_row(
    conn: Connection, row: Row[Any], *, source: str, ip: str | None = None
) -> Subscriber:
    """Unsubscribe the subscriber ``row``, read by :func:`get` in ``conn``'s transaction
    (the web endpoint checks the link's token against it in between). Three statements
    after the read: the one-click POST comes by the thousand after a send."""
    now = utcnow()
    added = _insert_suppression(conn, row.email_key, "unsubscribed", now)
    _set_status(conn, row.id, "unsubscribed", source=source, ip=ip, detail=None, now=now)
    reason = "unsubscribed" if added else suppression_reason(conn, row.email)
    return replace(Subscriber.from_row(row, reason), status="unsubscribed")


def confirm(
    store: Store, subscriber_id: int, *, source: str = "email", ip: str | None = None
) -> Subscriber | None:
    """The owner followed the confirmation link: active, and any suppression lifted (a new
    opt-in). Idempotent. None if the subscriber does not exist."""
    with store.begin() as conn:
        row = get(conn, subscriber_id)
        if row is None:
            return None
        reason = suppression_reason(conn, row.email)
        if row.status == "active" and reason is None:
            return Subscriber.from_row(row)
        now = utcnow()
        conn.execute(delete(suppressions).where(suppressions.c.email_key == row.email_key))
        conn.execute(
            update(subscribers)
            .where(subscribers.c.id == row.id)
            .values(status="active", confirmed_at=now, soft_bounces=0, updated_at=now)
        )
        action = "resubscribe" if reason or row.confirmed_at else "confirm"
        detail = f"lifted suppression ({reason})" if reason else None
        record_consent(conn, row.id, action, source, ip=ip, detail=detail, at=now)
        return Subscriber.from_row(get(conn, row.id))


def remove(store: Store, email: str) -> bool:
    """Erase a subscriber and their consent history (a request to be forgotten). The
    suppression list keeps the address if it is suppressed. False if not on the list."""
    with store.begin() as conn:
        row = find(conn, email)
        if row is None:
            return False
        conn.execute(delete(consent_events).where(consent_events.c.subscriber_id == row.id))
        conn.execute(delete(subscribers).where(subscribers.c.id == row.id))
        return True


def history(store: Store, subscriber_id: int) -> list[Row[Any]]:
    """The subscriber's consent events, oldest first."""
    with store.read() as conn:
        return list(
            conn.execute(
                select(consent_events)
                .where(consent_events.c.subscriber_id == subscriber_id)
                .order_by(consent_events.c.id)
            )
        )
