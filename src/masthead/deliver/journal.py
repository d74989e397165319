"""The send journal: every answer of the mail server, written down before anything else.

The database learns a sender's answers in batches (a few times a second), and a sender
killed between an answer and its batch, or one whose database went away, used to leave
those rows in ``sending``: the next run put them back to ``pending`` and mailed them again
(up to ~600 messages after one SIGKILL on SQLite; 1,923 of 5,000 readers after a 40 s
PostgreSQL outage).

So each sender appends every answer, the moment it arrives, to its own file
``.masthead/journal/<issue>.<pid>.<nonce>.log`` with one ``write(2)``: a killed process
loses nothing it wrote (the kernel has it). When a sender ends with every answer recorded,
it deletes its journal. The next sender on the machine, before it puts a dead sender's rows
back to ``pending``, replays that sender's journal into the outbox (:func:`replay`), so only
the messages that were on the wire without an answer may go out twice.

A line: ``row id, subscriber id, attempts, state, code, retry-at, email, error``,
tab-separated. The first line names the sender (``machine:pid:nonce``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select, update

from ..store import outbox
from .outbox import Claimed, Result, _pid_alive, among, db_now, this_machine

if TYPE_CHECKING:
    from ..model import Publication
    from ..store import Store

SUFFIX = ".log"
DONE = "done"
"""The folder of journals whose answers are all in the database."""
KEEP_DONE_SECONDS = 30 * 24 * 3600
"""Without copies of the database (PostgreSQL), how long finished journals are kept."""
STATES = frozenset({"sent", "failed", "unknown", "bounced", "retry", "release"})
"""The answers a journal line may hold (what :class:`~.outbox.Result` records)."""
CHUNK = 5000
"""Answers replayed per transaction (SQLite takes at most 32,766 parameters)."""
_UNSAFE = re.compile(r"[\t\r\n\x00-\x1f\x7f]")


def journal_dir(pub: Publication) -> Path:
    return pub.state_dir / "journal"


def _slug_part(slug: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", slug)


def _clean(text: str) -> str:
    return _UNSAFE.sub(" ", text)


class Journal:
    """One sender's journal (open for appending for the life of the run)."""

    def __init__(self, pub: Publication, issue_slug: str, sender: str) -> None:
        folder = journal_dir(pub)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _, pid, nonce = sender.rsplit(":", 2)
        self.path = folder / f"{_slug_part(issue_slug)}.{pid}.{nonce}{SUFFIX}"
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
        )
        os.write(self._fd, f"{_clean(sender)}\t{_clean(issue_slug)}\n".encode())

    def write(self, result: Result) -> None:
        """Append one answer (one write: it survives a kill of this process)."""
        if self._fd is None:
            return
        r, row = result, result.row
        line = "\t".join(
            (
                str(row.id),
                str(row.subscriber_id),
                str(row.attempts),
                r.state,
                "" if r.code is None else str(r.code),
                r.retry_at.isoformat() if r.retry_at else "",
                _clean(row.email),
                _clean(r.error[:500]),
            )
        )
        os.write(self._fd, (line + "\n").encode("utf-8", "replace"))

    def close(self, *, all_recorded: bool) -> None:
        """Close. When every answer is in the database, the journal moves to ``done/``: it
        stays until every copy of the database kept in ``.masthead/backups/`` was made after
        it, so restoring a copy can bring its answers back (:func:`replay_finished`)."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        if all_recorded:
            done = self.path.parent / DONE
            try:
                done.mkdir(exist_ok=True, mode=0o700)
                os.replace(self.path, done / self.path.name)
            except OSError:
                self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Replayed:
    journals: int
    answers: int


def _read(path: Path) -> tuple[str, str, list[Result]] | None:
    try:
        lines = path.read_text("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    if not lines:
        return None
    head = lines[0].split("\t")
    if len(head) != 2:
        return None
    sender, slug = head
    results: list[Result] = []
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) != 8:  # the last line of a process killed mid-write
            continue
        rid, sid, attempts, state, code, retry_at, email, error = fields
        try:
            numbers = (int(rid), int(sid), int(attempts), int(code) if code else 0)
            at = datetime.fromisoformat(retry_at) if retry_at else None
        except ValueError:
            continue
        if state not in STATES or not all(0 <= n < 2**63 for n in numbers) or numbers[3] > 999:
            continue  # no line of ours: never written into a row
        if at is not None and at.tzinfo is None:
            continue
        row = Claimed(numbers[0], numbers[1], email, "", None, numbers[2])
        results.append(Result(row, state, int(code) if code else None, error, None, at))
    return sender, slug, results


def _pid_here(sender: str) -> int | None:
    """The process id of ``sender`` (``machine:pid:nonce``) when it is of this machine."""
    parts = sender.rsplit(":", 2)
    if len(parts) == 3 and parts[0] == this_machine() and parts[1].isdigit():
        return int(parts[1])
    return None


def _dead_here(sender: str) -> bool:
    """Whether ``sender`` was a process of this machine that no longer runs."""
    pid = _pid_here(sender)
    return pid is not None and not _pid_alive(pid)


def _gone(store: Store, issue_slug: str, sender: str) -> bool:
    """Whether the sender of a journal is gone: a process of this machine that no longer
    runs; or one of another machine identity (this host before a reboot, a restarted
    container on the same folder) that holds no live lease on the send."""
    if _dead_here(sender):
        return True
    if _pid_here(sender) is not None:
        return False  # alive here
    return not holds_live_lease(store, issue_slug, sender)


def _finished_with(path: Path, sender: str) -> bool:
    """Whether a replayed journal may be deleted: always when its process is known dead; a
    journal of another machine identity only once it has been quiet for a day (were its
    sender alive and idle, replaying its true answers early does no harm, but deleting the
    file it still writes to would)."""
    import time

    if _dead_here(sender):
        return True
    try:
        return time.time() - path.stat().st_mtime > 24 * 3600
    except OSError:
        return False


def live_senders(pub: Publication) -> list[int]:
    """The process ids of this machine's senders that are running now (by their journals)."""
    folder = journal_dir(pub)
    pids = []
    for path in folder.glob(f"*{SUFFIX}") if folder.is_dir() else []:
        try:
            sender = path.read_text("utf-8", errors="replace").split("\t", 1)[0]
        except OSError:
            continue
        pid = _pid_here(sender)
        if pid is not None and _pid_alive(pid):
            pids.append(pid)
    return sorted(set(pids))


def replay(
    pub: Publication,
    store: Store,
    issue_slug: str,
    message_ids: tuple[str, str] | None = None,
) -> Replayed:
    """Record the answers in the journals of this machine's dead senders of ``issue_slug``
    (call before :func:`~masthead.deliver.outbox.recover` puts their rows back).

    An answer is applied to its row while the row is still the dead sender's (``sending``)
    or has been put back to ``pending`` and not sent since; rows another sender has
    answered meanwhile are left alone. Idempotent: a journal is deleted once replayed."""
    folder = journal_dir(pub)
    if not folder.is_dir():
        return Replayed(0, 0)
    journals = answers = 0
    for path in sorted(folder.glob(f"{_slug_part(issue_slug)}.*{SUFFIX}")):
        read = _read(path)
        if read is None:
            continue
        sender, slug, results = read
        if slug != issue_slug or not _gone(store, issue_slug, sender):
            continue
        answers += _apply(store, issue_slug, sender, results, message_ids)
        if _finished_with(path, sender):
            path.unlink(missing_ok=True)
        journals += 1
    return Replayed(journals, answers)


def _apply(
    store: Store,
    issue_slug: str,
    sender: str,
    results: list[Result],
    message_ids: tuple[str, str] | None,
) -> int:
    """Record a journal's answers into the rows they belong to (see :func:`replay`)."""
    from .outbox import record

    latest: dict[int, Result] = {}
    for r in results:  # a row answered twice in one run (a retry): the last answer
        latest[r.row.id] = r
    answered = list(latest.values())
    for start in range(0, len(answered), CHUNK):
        chunk = answered[start : start + CHUNK]
        adopt_for_replay(
            store, issue_slug, sender, [(r.row.id, r.row.subscriber_id, r.row.email) for r in chunk]
        )
        record(store, sender, chunk, message_ids)
    return len(latest)


def replay_finished(
    pub: Publication, store: Store, since: float, message_ids: Callable[[str], tuple[str, str]]
) -> int:
    """After a copy of the database made at ``since`` (a Unix time) was restored: record
    the answers of every finished journal written after it, so that no reader the copy
    does not know as mailed is mailed again. Returns how many answers."""
    folder = journal_dir(pub) / DONE
    answers = 0
    for path in sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []:
        try:
            if path.stat().st_mtime < since:
                continue
        except OSError:
            continue
        read = _read(path)
        if read is None:
            continue
        sender, slug, results = read
        answers += _apply(store, slug, sender, results, message_ids(slug))
    return answers


def prune_finished(pub: Publication, oldest_copy: float | None) -> None:
    """Delete finished journals that every kept copy of the database includes (older than
    the oldest copy), or, without copies, older than :data:`KEEP_DONE_SECONDS`."""
    import time

    folder = journal_dir(pub) / DONE
    limit = oldest_copy if oldest_copy is not None else time.time() - KEEP_DONE_SECONDS
    for path in folder.glob(f"*{SUFFIX}") if folder.is_dir() else []:
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
        except OSError:
            continue


def holds_live_lease(store: Store, issue_slug: str, sender: str) -> bool:
    """Whether ``sender`` still holds a row of the send whose lease has not run out."""
    with store.read() as conn:
        now = db_now(conn)
        return (
            conn.execute(
                select(outbox.c.id)
                .where(
                    outbox.c.issue_slug == issue_slug,
                    outbox.c.state == "sending",
                    outbox.c.claimed_by == sender,
                    outbox.c.lease_until >= now,
                )
                .limit(1)
            ).first()
            is not None
        )


def adopt_for_replay(
    store: Store, issue_slug: str, sender: str, rows: list[tuple[int, int, str]]
) -> int:
    """Mark the rows of a dead sender's journal as ``sender``'s again, so that
    :func:`record` applies its answers: rows still in its claim, or put back to ``pending``
    (by :func:`recover`) and not claimed since. ``rows`` are (row id, subscriber id,
    address): a row is taken only when all three match (a journal copied from another
    publication names other readers). Returns how many."""
    named = {rid: (sid, email) for rid, sid, email in rows}
    with store.begin() as conn:
        found = conn.execute(
            select(outbox.c.id, outbox.c.subscriber_id, outbox.c.email).where(
                outbox.c.issue_slug == issue_slug, among(conn, outbox.c.id, list(named))
            )
        ).all()
        ids = [r.id for r in found if named.get(r.id) == (r.subscriber_id, r.email)]
        if not ids:
            return 0
        theirs = and_(outbox.c.state == "sending", outbox.c.claimed_by == sender)
        put_back = and_(outbox.c.state == "pending", outbox.c.claimed_by.is_(None))
        return int(
            conn.execute(
                update(outbox)
                .where(
                    outbox.c.issue_slug == issue_slug,
                    among(conn, outbox.c.id, ids),
                    or_(theirs, put_back),
                )
                .values(state="sending", claimed_by=sender)
            ).rowcount
        )
