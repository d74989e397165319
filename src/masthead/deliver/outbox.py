"""The outbox: one row per (issue, subscriber), and every change of its state.

A row moves ``pending → sending → sent | failed | unknown`` (or ``suppressed``), and only
:func:`record` moves it out of ``sending``, after the mail server has answered. Claims are
one ``UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING`` in a ``BEGIN IMMEDIATE``
transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so two senders never hold the same
row. A claim carries the sender's id (``host:pid:nonce``) and a lease; :func:`recover` puts
back to ``pending`` the rows of a sender that died (same host, process gone) or whose lease
ran out.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)

from ..store import (
    Store,
    dialect_insert,
    outbox,
    rate_limits,
    sends,
    subscribers,
    suppressions,
    utcnow,
)
from ..store.bounces import record_hard_bounce
from ..store.subscriber_list import may_be_mailed

TERMINAL = ("sent", "failed", "unknown", "suppressed")
HARD_BOUNCE = "hard bounce: "


def this_machine() -> str:
    """Where process ids mean something: the host name, the kernel's boot and the PID
    namespace. Two containers named alike (or one host after a reboot) are different
    machines, so a sender never takes another's process id for one of its own. The
    environment variable ``MASTHEAD_MACHINE`` names the machine instead."""
    override = os.environ.get("MASTHEAD_MACHINE")
    if override:  # containers that share a kernel and a PID namespace id; tests of many hosts
        return override.replace(":", "_")
    parts = [socket.gethostname().replace(":", "_")]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8])
        parts.append("".join(c for c in os.readlink("/proc/self/ns/pid") if c.isdigit()))
    except OSError:  # not Linux: the host name alone
        pass
    return "/".join(parts)


def sender_id() -> str:
    """This process's claim mark: ``machine:pid:nonce`` (see :func:`this_machine`)."""
    return f"{this_machine()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class SendState:
    """Counts of one issue's outbox rows by state, plus the send's own flags."""

    issue_slug: str
    exists: bool = False
    paused: bool = False
    total: int = 0
    states: dict[str, int] = field(default_factory=dict)
    bounced: int = 0

    def count(self, state: str) -> int:
        return self.states.get(state, 0)

    @property
    def failed(self) -> int:
        """Failed rows other than hard bounces (those are counted in :attr:`bounced`)."""
        return self.count("failed") - self.bounced

    @property
    def remaining(self) -> int:
        return self.count("pending") + self.count("sending")

    @property
    def complete(self) -> bool:
        """Every row sent or suppressed, or failed as a hard bounce (its address is now
        suppressed): the exit status 0 of ``masthead send``."""
        done = self.count("sent") + self.count("suppressed") + self.bounced
        return self.exists and done == self.total


def _recipients():  # type: ignore[no-untyped-def]
    return select(
        subscribers.c.id,
        subscribers.c.email,
        subscribers.c.name,
        subscribers.c.language,
    ).where(may_be_mailed())


def count_recipients(store: Store) -> int:
    """How many subscribers a new send would go to (active, not suppressed)."""
    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(_recipients().subquery())).scalar_one()


def create_send(store: Store, issue_slug: str) -> tuple[bool, int]:
    """Create the send of ``issue_slug`` and its outbox rows, in one transaction, unless it
    exists. Returns (created, total). The list is fixed when the send is created: whoever
    subscribes later does not receive this issue; whoever leaves before their message goes
    out does not either (checked at claim time)."""
    with store.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Workers starting together: the first creates the outbox, the others wait for
            # its transaction and find the send (SQLite's BEGIN IMMEDIATE does the same).
            conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:slug))"), {"slug": issue_slug}
            )
        existing = conn.execute(
            select(sends.c.total).where(sends.c.issue_slug == issue_slug)
        ).first()
        if existing is not None:
            return False, int(existing.total)
        now = utcnow()
        rows = _recipients().with_only_columns(
            literal(issue_slug),
            subscribers.c.id,
            subscribers.c.email,
            subscribers.c.name,
            subscribers.c.language,
            literal("pending"),
            literal(0),
            literal(now, type_=outbox.c.created_at.type),
        )
        columns = ["issue_slug", "subscriber_id", "email", "name", "language", "state"]
        stmt = _insert(store).from_select([*columns, "attempts", "created_at"], rows)
        conn.execute(stmt.on_conflict_do_nothing())
        total = conn.execute(
            select(func.count()).where(outbox.c.issue_slug == issue_slug)
        ).scalar_one()
        conn.execute(
            insert(sends).values(issue_slug=issue_slug, created_at=now, paused=0, total=total)
        )
    if store.engine.dialect.name == "postgresql":
        # Fresh statistics, or the planner takes a million new rows for a handful and sorts
        # them all for every claim, or looks up claimed subscribers through the status index
        # (autovacuum would notice only later).
        with store.engine.connect() as conn:
            conn.execute(text("ANALYZE outbox, subscribers"))
            conn.commit()
    return True, int(total)


def _insert(store: Store, table=outbox):  # type: ignore[no-untyped-def]
    return dialect_insert(store.engine.dialect.name, table)


def book_slots(store: Store, name: str, n: int, interval: float) -> tuple[float, float]:
    """Book ``n`` send slots ``interval`` seconds apart on the rate limit ``name``, shared by
    every sender of the database; returns (the database's now, the first slot), in seconds
    since the epoch on the database's clock (see :class:`~masthead.deliver.ratelimit.
    SharedRate`). One short transaction: the row is locked (``FOR UPDATE``; SQLite's
    ``BEGIN IMMEDIATE``) while it is moved forward."""

    with store.begin() as conn:
        conn.execute(
            _insert(store, rate_limits).values(name=name, next_at=0.0).on_conflict_do_nothing()
        )
        next_at = conn.execute(
            select(rate_limits.c.next_at).where(rate_limits.c.name == name).with_for_update()
        ).scalar_one()
        # The clock is read once the row is ours: a sender that waited for another's booking
        # must not book from the time before it waited (its slots would overlap the other's).
        now = db_now(conn).timestamp()
        first = max(float(next_at), now)
        conn.execute(
            update(rate_limits)
            .where(rate_limits.c.name == name)
            .values(next_at=first + n * interval)
        )
        return now, first


def send_state(store: Store, issue_slug: str) -> SendState:
    with store.read() as conn:
        row = conn.execute(select(sends).where(sends.c.issue_slug == issue_slug)).first()
        state = SendState(issue_slug)
        if row is None:
            return state
        state.exists = True
        state.paused = bool(row.paused)
        state.total = int(row.total)
        for s, n in conn.execute(
            select(outbox.c.state, func.count())
            .where(outbox.c.issue_slug == issue_slug)
            .group_by(outbox.c.state)
        ):
            state.states[s] = int(n)
        state.bounced = conn.execute(
            select(func.count())
            .where(outbox.c.issue_slug == issue_slug)
            .where(outbox.c.state == "failed")
            .where(outbox.c.last_error.like(HARD_BOUNCE + "%"))
        ).scalar_one()
        return state


def send_created_at(store: Store, issue_slug: str) -> datetime:
    """When the send (and so every outbox row of it) was created."""
    with store.read() as conn:
        return conn.execute(
            select(sends.c.created_at).where(sends.c.issue_slug == issue_slug)
        ).scalar_one()


def set_paused(store: Store, issue_slug: str, paused: bool) -> bool:
    """Pause (running senders stop claiming) or resume a send; False if there is none."""
    with store.begin() as conn:
        result = conn.execute(
            update(sends).where(sends.c.issue_slug == issue_slug).values(paused=int(paused))
        )
        return result.rowcount > 0


def mark_started(store: Store, issue_slug: str) -> None:
    with store.begin() as conn:
        conn.execute(
            update(sends)
            .where(sends.c.issue_slug == issue_slug)
            .where(sends.c.started_at.is_(None))
            .values(started_at=utcnow())
        )


def mark_finished(store: Store, issue_slug: str) -> None:
    with store.begin() as conn:
        conn.execute(
            update(sends).where(sends.c.issue_slug == issue_slug).values(finished_at=utcnow())
        )


def db_now(conn: Connection) -> datetime:
    """Now on the database's clock (PostgreSQL's ``clock_timestamp()``), which every machine
    of a shared database agrees on: leases are set and compared with it, so a machine whose
    clock runs ahead never takes over the live claims of another. On SQLite, one machine's
    file, it is this machine's clock."""
    if conn.dialect.name == "postgresql":
        return conn.execute(select(func.clock_timestamp())).scalar_one()
    return utcnow()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(
    store: Store, issue_slug: str, *, resend_unknown: bool = False, orphans_of: str = ""
) -> int:
    """Put back to ``pending`` the rows left in ``sending`` by a sender that is gone (a
    process of this host that no longer runs, or any sender whose lease ran out), and, with
    ``resend_unknown``, the ``unknown`` rows. ``orphans_of``: a sender with nothing in flight
    whose own rows are to come back too. Returns how many rows were put back: their
    messages may have been delivered already (they were in flight)."""
    host = this_machine()
    with store.begin() as conn:
        now = db_now(conn)
        claimers = conn.execute(
            select(outbox.c.claimed_by)
            .where(outbox.c.issue_slug == issue_slug, outbox.c.state == "sending")
            .distinct()
        ).scalars()
        dead = []
        for claimer in claimers:
            parts = (claimer or "").rsplit(":", 2)
            if claimer is None or (
                len(parts) == 3
                and parts[0] == host
                and parts[1].isdigit()
                and not _pid_alive(int(parts[1]))
            ):
                dead.append(claimer)
        stale = and_(
            outbox.c.issue_slug == issue_slug,
            outbox.c.state == "sending",
            or_(
                outbox.c.lease_until < now,
                outbox.c.claimed_by.in_([d for d in dead if d is not None] + [orphans_of]),
                outbox.c.claimed_by.is_(None),
            ),
        )
        n = conn.execute(
            update(outbox)
            .where(stale)
            .values(state="pending", claimed_by=None, lease_until=None, next_attempt_at=None)
        ).rowcount
        if resend_unknown:
            n += conn.execute(
                update(outbox)
                .where(outbox.c.issue_slug == issue_slug, outbox.c.state == "unknown")
                .values(state="pending", next_attempt_at=None)
            ).rowcount
        return int(n)


@dataclass(frozen=True)
class Claimed:
    id: int
    subscriber_id: int
    email: str
    name: str
    language: str | None
    attempts: int
    soft_bounced: bool = False
    """The subscriber had soft bounces when the row was claimed: a delivery resets them."""


def among(conn: Connection, column: Any, values: Iterable[int]) -> Any:
    """``column IN values``, as one array parameter on PostgreSQL (``= ANY(:ids)``): a list
    of 250 placeholders costs psycopg ~10 ms to parse on every claim, its text being too long
    for its cache."""
    values = list(values)
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


@contextmanager
def _sender_transaction(store: Store) -> Iterator[Connection]:
    """A transaction of the sending loop (claims, answers, leases). On PostgreSQL its
    commit does not wait for the disk (``synchronous_commit = off``): what a crash of the
    database server could lose is the last fraction of a second of these, which leaves rows
    in ``sending`` to be taken over as if their sender had died (the same bound as SQLite's
    ``synchronous = NORMAL``); the subscriber list itself keeps full durability."""
    with store.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            # A sender cut off mid-transaction (a network that hangs) must not hold its row
            # locks for ever: the server ends such a transaction, and the rows are free for
            # the sender that takes over after the lease.
            conn.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = '10s'")
        yield conn


def claim(
    store: Store, issue_slug: str, me: str, n: int, lease: float, after: int = 0
) -> list[Claimed] | None:
    """Claim up to ``n`` due rows for ``me``; None when the send is paused. Rows whose
    subscriber has left or been suppressed since the send was created become ``suppressed``
    here, before any message is made for them.

    ``after`` is the highest id this sender claimed so far: rows above it are looked at
    first, so a claim does not walk the index entries of every row already claimed (on
    PostgreSQL they stay in the pending index until vacuum: at a million rows, walking them
    made each claim slower than the last). Only when those run short does the claim look
    from the start, for retries and rows given back or taken over."""
    with _sender_transaction(store) as conn:
        paused = conn.execute(
            select(sends.c.paused).where(sends.c.issue_slug == issue_slug)
        ).scalar()
        if paused:
            return None
        now = db_now(conn)
        until = now + timedelta(seconds=lease)
        rows = _claim_due(conn, issue_slug, me, n, until, now, after)
        if len(rows) < n and after > 0:
            rows += _claim_due(conn, issue_slug, me, n - len(rows), until, now, 0)
        if not rows:
            return []
        # Who is still to be mailed: active and not suppressed (by the subscriber's own key:
        # SQLite's lower() folds ASCII only). Looked up by subscriber id, the primary key;
        # their soft-bounce counts come with it, so recording a delivery costs nothing for
        # the many whose count is zero.
        still = dict(
            conn.execute(
                select(subscribers.c.id, subscribers.c.soft_bounces)
                .where(among(conn, subscribers.c.id, {r.subscriber_id for r in rows}))
                .where(subscribers.c.status == "active")
                .where(~exists().where(suppressions.c.email_key == subscribers.c.email_key))
            ).all()
        )
        gone = {r.id for r in rows if r.subscriber_id not in still}
        if gone:
            conn.execute(
                update(outbox)
                .where(among(conn, outbox.c.id, gone))
                .values(state="suppressed", claimed_by=None, lease_until=None)
            )
        return [
            Claimed(*r, soft_bounced=bool(still[r.subscriber_id])) for r in rows if r.id not in gone
        ]


def _claim_due(
    conn: Connection,
    issue_slug: str,
    me: str,
    n: int,
    until: datetime,
    now: datetime,
    after: int,
) -> list[Any]:
    """One ``UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING`` of due pending rows with
    ids above ``after`` (on PostgreSQL ``id = ANY(ARRAY(SELECT … FOR UPDATE SKIP
    LOCKED))``)."""
    due = (
        select(outbox.c.id)
        .where(outbox.c.issue_slug == issue_slug, outbox.c.state == "pending")
        .where(or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now))
        .where(outbox.c.id > after)
        .order_by(outbox.c.id)
        .limit(n)
    )
    if conn.dialect.name == "postgresql":
        # ``id = ANY(ARRAY(subquery))``: the ids are gathered once, by an InitPlan. Under
        # ``id IN (subquery)`` the planner may run a LIMIT … SKIP LOCKED subquery more than
        # once (rechecking a join), each run finding other unlocked rows, and so claim more
        # than ``n``. (A MATERIALIZED CTE is as safe, and measured as fast.)
        ids = func.array(due.with_for_update(skip_locked=True).scalar_subquery())
        chosen = outbox.c.id == any_(ids)
    else:
        chosen = outbox.c.id.in_(due.scalar_subquery())
    return list(
        conn.execute(
            update(outbox)
            .where(chosen)
            .values(state="sending", claimed_by=me, lease_until=until)
            .returning(
                outbox.c.id,
                outbox.c.subscriber_id,
                outbox.c.email,
                outbox.c.name,
                outbox.c.language,
                outbox.c.attempts,
            )
        ).all()
    )


def waiting(store: Store, issue_slug: str) -> tuple[datetime | None, int]:
    """(when the earliest pending row becomes due, or None if none is pending; how many rows
    a sender holds). One statement, so one snapshot: asked one after the other, a row that
    another sender put back from ``sending`` to ``pending`` in between would be in neither,
    and a sender would think the send done while it is not."""
    pending = outbox.c.state == "pending"
    with store.read() as conn:
        due, sending = conn.execute(
            select(
                func.min(func.coalesce(outbox.c.next_attempt_at, outbox.c.created_at)).filter(
                    pending
                ),
                func.count().filter(outbox.c.state == "sending"),
            ).where(outbox.c.issue_slug == issue_slug, outbox.c.state.in_(("pending", "sending")))
        ).one()
    return due, int(sending)


def renew_lease(store: Store, me: str, lease: float) -> None:
    """Extend the lease of every row ``me`` holds, to ``lease`` seconds from now."""
    with _sender_transaction(store) as conn:
        until = db_now(conn) + timedelta(seconds=lease)
        conn.execute(
            update(outbox)
            .where(outbox.c.claimed_by == me, outbox.c.state == "sending")
            .values(lease_until=until)
        )


@dataclass(frozen=True)
class Result:
    """What became of one claimed row (see :func:`record`)."""

    row: Claimed
    state: str
    """"sent", "failed", "unknown", "bounced", "retry" (back to pending at ``retry_at``, one
    attempt more) or "release" (back to pending at ``retry_at``, not an attempt)."""
    code: int | None = None
    error: str = ""
    message_id: str | None = None
    retry_at: datetime | None = None


def message_id_parts(issue_slug: str, nonce: str, domain: str) -> tuple[str, str]:
    """(prefix, suffix) of every Message-ID of one send: ``prefix + row id + suffix``
    (see :func:`masthead.render.email.message.make_message_id`)."""
    from ..render.email.message import make_message_id

    marker = "0000000000"
    full = make_message_id(issue_slug, marker, nonce, domain)
    prefix, _, suffix = full.partition(f".{marker}.")
    return f"{prefix}.", f".{suffix}"


def record(
    store: Store, me: str, results: Iterable[Result], message_ids: tuple[str, str] | None = None
) -> None:
    """Write a batch of outcomes in one transaction. A row is only changed while it is still
    claimed by ``me`` (a sender whose lease ran out does not overwrite the next one's work).
    ``message_ids`` is the (prefix, suffix) of the send's Message-IDs (``prefix + id +
    suffix``), stored with each answered row. Hard bounces also suppress the address and log
    a bounce event; an accepted message resets its subscriber's soft-bounce count."""
    results = list(results)
    if not results:
        return
    now = utcnow()
    sent: list[int] = []
    accepted: set[int] = set()  # subscribers with soft bounces whose message the server took
    done: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []
    for r in results:
        if r.state == "sent" and r.row.soft_bounced:
            accepted.add(r.row.subscriber_id)
        if r.state == "sent" and r.code == 250:
            sent.append(r.row.id)  # the common case: one UPDATE for all of them
        elif r.state in ("retry", "release"):
            again.append(
                {
                    "b_id": r.row.id,
                    "b_attempts": r.row.attempts + (1 if r.state == "retry" else 0),
                    "b_next": r.retry_at or now,
                    "b_code": r.code,
                    "b_error": r.error[:1000] or None,
                }
            )
        else:
            state = "failed" if r.state == "bounced" else r.state
            error = (HARD_BOUNCE + r.error) if r.state == "bounced" else r.error
            done.append(
                {
                    "b_id": r.row.id,
                    "b_state": state,
                    "b_attempts": r.row.attempts + 1,
                    "b_code": r.code,
                    "b_error": error[:1000] or None,
                    "b_sent": now if state == "sent" else None,
                }
            )
    mine = and_(outbox.c.claimed_by == me, outbox.c.state == "sending")
    answered = _message_id(message_ids)
    with _sender_transaction(store) as conn:
        if sent:
            conn.execute(
                update(outbox)
                .where(mine, among(conn, outbox.c.id, sent))
                .values(
                    state="sent",
                    attempts=outbox.c.attempts + 1,
                    last_code=250,
                    last_error=None,
                    message_id=answered,
                    sent_at=now,
                    claimed_by=None,
                    lease_until=None,
                )
            )
        if done:
            conn.execute(
                update(outbox)
                .where(mine, outbox.c.id == bindparam("b_id"))
                .values(
                    state=bindparam("b_state"),
                    attempts=bindparam("b_attempts"),
                    last_code=bindparam("b_code"),
                    last_error=bindparam("b_error"),
                    message_id=answered,
                    sent_at=bindparam("b_sent"),
                    claimed_by=None,
                    lease_until=None,
                ),
                done,
            )
        if again:
            conn.execute(
                update(outbox)
                .where(mine, outbox.c.id == bindparam("b_id"))
                .values(
                    state="pending",
                    attempts=bindparam("b_attempts"),
                    next_attempt_at=bindparam("b_next"),
                    last_code=bindparam("b_code"),
                    last_error=bindparam("b_error"),
                    claimed_by=None,
                    lease_until=None,
                ),
                again,
            )
        if accepted:
            _reset_soft_bounces(conn, accepted)
        for r in results:
            if r.state == "bounced":
                record_hard_bounce(
                    conn,
                    r.row.subscriber_id,
                    r.row.email,
                    f"SMTP {r.code} {r.error}"[:1000],
                    suppression_detail=f"{r.code} {r.error}"[:500],
                    at=now,
                )


def _reset_soft_bounces(conn: Connection, subscriber_ids: Iterable[int]) -> None:
    """A delivery between soft bounces starts their count again (see
    :mod:`masthead.store.bounces`). Only for the rare subscribers whose count was not zero when
    claimed (:attr:`Claimed.soft_bounced`), in one statement per batch: the send path must
    stay at thousands of messages a second."""
    conn.execute(
        update(subscribers)
        .where(among(conn, subscribers.c.id, subscriber_ids))
        .where(subscribers.c.soft_bounces != 0)
        .values(soft_bounces=0, updated_at=utcnow())
    )


def _message_id(parts: tuple[str, str] | None):  # type: ignore[no-untyped-def]
    """The Message-ID column as an SQL expression of the row id."""
    if parts is None:
        return outbox.c.message_id
    return literal(parts[0]) + cast(outbox.c.id, Text) + literal(parts[1])


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before attempt ``attempts + 1``: exponential, capped, with full jitter in
    [0.5, 1.5) so retries from many rows do not arrive together."""
    return min(cap, base * (2 ** max(0, attempts - 1))) * (0.5 + random.random())
