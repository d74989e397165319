"""The sending loop: claim outbox rows, personalise, hand them to a pool of SMTP connections,
record each answer.

Three kinds of task share one event loop:

* the *producer* claims due rows in batches (:func:`masthead.deliver.outbox.claim`), makes
  each recipient's message from the issue's template (rendered once per language) and queues
  it;
* *workers*, one per connection (``[smtp] concurrency``), take queued messages through a
  :class:`_Jobs` source that applies the rate limits at the moment a message is handed to the
  connection, and send them pipelined (:mod:`masthead.deliver.smtp`);
* the *recorder* writes the outcomes in batches, a few times a second, in one transaction each
  (:func:`masthead.deliver.outbox.record`), and renews the claims' lease.

Database calls run on one worker thread, so SQLite's fsyncs never stall the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from ..errors import (
    MastheadError,
    RecipientError,
    SendError,
    SmtpError,
    StoreError,
    disk_fault,
)
from ..model import Publication
from ..render.email.message import MessageTemplate, Recipient
from ..store import Store, database_error_line, utcnow
from ..store.tokens import (
    list_address,
    secret_key,
    unsubscribe_mailto,
    unsubscribe_url,
    verp_address,
)
from . import outbox
from .journal import Journal, replay
from .outbox import Claimed, Result
from .ratelimit import DomainLimits, SharedRate
from .smtp import Outcome, SmtpConnection, SmtpSettings


def send_message_id_parts(pub: Publication, issue_slug: str) -> tuple[str, str]:
    """(prefix, suffix) of the send's Message-IDs: ``<slug.row-id.nonce@domain>``, the nonce
    a MAC of the issue (unique to the publication, the same on a retry: a resent message
    keeps its Message-ID)."""
    domain = (list_address(pub) or ("masthead", "localhost"))[1]
    nonce = hashlib.sha256(secret_key(pub) + f"msgid|{issue_slug}".encode()).hexdigest()[:12]
    return outbox.message_id_parts(issue_slug, nonce, domain)


RATE_NAME = "smtp"
"""The row of ``rate_limits`` that ``[smtp] rate_per_minute`` books its slots on."""


@dataclass(frozen=True)
class SendPolicy:
    """How a send paces itself and retries (``[smtp]`` sets the first four)."""

    concurrency: int = 4
    rate_per_minute: int = 0
    rate_per_domain_per_minute: int = 0
    batch: int = 250
    lease: float = 300.0
    """Seconds a claim holds before another sender may take the row over."""
    retry_base: float = 60.0
    """First back-off after a 4xx answer, in seconds; it doubles per attempt (with jitter)."""
    retry_cap: float = 3600.0
    max_age: float = 3 * 24 * 3600.0
    """After this many seconds since the send was created, a 4xx answer fails the row."""
    commit_every: float = 0.1
    """Seconds between writes of the answers (what a kill can leave unrecorded)."""
    db_stall: float = 1.0
    """Seconds a database call may take before the connections stop handing out messages
    until it answers (a database that hangs rather than fails)."""
    db_patience: float = 60.0
    """Seconds a failing database call is tried again (a restart, a lost connection) before
    the run stops; no message goes out meanwhile. At most half the lease, so a worker that
    waits out an outage still holds its claims."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "db_patience", min(self.db_patience, self.lease / 2))


@dataclass
class RunStats:
    """What this run did (the final report adds the totals from the database)."""

    sent: int = 0
    failed: int = 0
    bounced: int = 0
    unknown: int = 0
    suppressed: int = 0
    retried: int = 0
    recovered: int = 0
    replayed: int = 0
    """Answers of senders that died during this run, recorded from their journals."""
    unrecorded: int = 0
    """Answers that could not be written to the database (it failed)."""
    paused: bool = False
    interrupted: bool = False
    """Stopped by SIGINT/SIGTERM: the messages in flight were finished and recorded."""
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


Progress = Callable[[RunStats], None]


class _Jobs:
    """A worker's view of the queue: an async iterator of ``(row, sender, rcpt, data)`` that
    waits for the rate limits, plus ``next_nowait()`` for pipelining."""

    def __init__(self, sender: Sender) -> None:
        self.s = sender
        self.finished = False

    def __aiter__(self) -> _Jobs:
        return self

    async def __anext__(self) -> tuple[Any, ...]:
        while True:
            if self.finished:
                raise StopAsyncIteration
            job = await self.s.queue.get()
            if job is None:
                self.finished = True
                raise StopAsyncIteration
            if self.s.stopping:  # interrupted or failed: what is queued goes back at once
                self.s.give_back(job[0])
                continue
            if self.s.lease_lost():  # another sender may hold it now: never mail it from here
                self.s.give_back(job[0], "lease ran out")
                continue
            if not self._domain_admits(job):
                continue
            try:
                await self.s.slot()
                await self.s.database_answers()
            except MastheadError as exc:  # the shared rate limit's database is gone
                self.s.fail(exc)
            if self.s.stopping or self.s.lease_lost():  # (it waited: check again)
                self.s.give_back(job[0])
                continue
            return job

    def next_nowait(self) -> tuple[Any, ...] | None:
        while not self.finished and not self.s.stopping and self.s.may_send and self.s.slot_now():
            try:
                job = self.s.queue.get_nowait()
            except asyncio.QueueEmpty:
                return None
            if job is None:
                self.finished = True
                return None
            if self.s.lease_lost():
                self.s.give_back(job[0], "lease ran out")
                continue
            if self._domain_admits(job):
                self.s.take_slot()
                return job
        return None

    def _domain_admits(self, job: tuple[Any, ...]) -> bool:
        """Take the domain's rate-limit slot for ``job``, or defer it (back to pending) when
        its domain is at its limit."""
        domain = job[2].rpartition("@")[2].lower()
        wait = self.s.domain_limits.wait_time(domain)
        if wait > 0:
            row = job[0]
            at = utcnow() + timedelta(seconds=wait)
            self.s.add_result(Result(row, "release", None, "domain rate limit", None, at))
            return False
        self.s.domain_limits.take(domain)
        return True


class Sender:
    """One run of ``masthead send`` for one issue."""

    def __init__(
        self,
        pub: Publication,
        store: Store,
        issue_slug: str,
        templates: Callable[[str | None], MessageTemplate],
        settings: SmtpSettings,
        policy: SendPolicy,
        progress: Progress | None = None,
    ) -> None:
        self.pub = pub
        self.store = store
        self.slug = issue_slug
        self.templates = templates
        self.settings = settings
        self.policy = policy
        self.progress = progress
        self.me = outbox.sender_id()
        self.stats = RunStats()
        self.results: list[Result] = []
        self.in_flight = 0
        self.fatal: MastheadError | None = None
        self.rate: SharedRate | None = None
        if policy.rate_per_minute > 0:
            book = functools.partial(outbox.book_slots, store, RATE_NAME)
            self.rate = SharedRate(policy.rate_per_minute, book)
        self._booking: asyncio.Future[Any] | None = None
        self.after = 0
        """The highest outbox id this sender has claimed (see :func:`outbox.claim`)."""
        self.domain_limits = DomainLimits(policy.rate_per_domain_per_minute)
        self.queue: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue(policy.batch * 2)
        self.secret = secret_key(pub)
        self.msgid_parts = send_message_id_parts(pub, issue_slug)
        self.journal: Journal | None = None
        self.created_at = outbox.send_created_at(store, issue_slug)
        self._db = ThreadPoolExecutor(1, thread_name_prefix="masthead-db")
        self._db_answers = asyncio.Event()
        self._db_answers.set()
        self._db_failed = False
        self._results_ready = asyncio.Event()
        self.leased_from: float | None = None
        """When (monotonic) the leases of every row this sender holds were last set: from the
        start of its first claim, then of each renewal that succeeded."""
        self._backlog = asyncio.Event()
        """Set while the answers waiting for the recorder are fewer than a batch."""
        self._backlog.set()
        self._stop = False

    # -- plumbing ------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """Whether this run hands out no more messages (interrupted, or a fatal error)."""
        return self.fatal is not None or self.stats.interrupted

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` (a database call) on the database thread. A lost connection, a
        database that is restarting, a deadlock or SQLite's busy lock is tried again, with
        back-off, for up to :attr:`SendPolicy.db_patience` seconds; meanwhile no message is
        handed to a connection (what is sent must be recorded). Every call here can be run
        twice: claims, answers and leases only touch rows still claimed by this sender.
        Past that patience, or on any other error, raises :class:`~masthead.errors.
        StoreError`."""
        loop = asyncio.get_running_loop()
        delay = 0.05
        deadline = time.monotonic() + self.policy.db_patience
        while True:
            if self._db_failed:
                raise StoreError("the database is unavailable (see the first error)")
            # A call that hangs (a server gone without closing its connections) stops the
            # connections too: what goes on the wire meanwhile could not be recorded.
            stalled = loop.call_later(self.policy.db_stall, self._db_answers.clear)
            try:
                result = await loop.run_in_executor(self._db, fn, *args)
            except DBAPIError as exc:
                if not _transient(exc) or time.monotonic() + delay > deadline:
                    self._db_failed = True
                    self._db_answers.set()  # wake the waiting connections: they stop
                    self._backlog.set()
                    raise StoreError(
                        f"the database failed ({database_error_line(exc)})",
                        fix="check that the database server is up and reachable, then run "
                        "the same command again: it carries on where the outbox stands",
                    ) from exc
                self._db_answers.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            finally:
                stalled.cancel()
            self._db_answers.set()
            return result

    def lease_lost(self) -> bool:
        """Whether the claims may have run out (a database that hung through a renewal):
        another sender may have taken the rows over, so their queued messages must not go."""
        if self.leased_from is None:
            return False
        margin = min(1.0, self.policy.lease / 10)
        return time.monotonic() > self.leased_from + self.policy.lease - margin

    @property
    def may_send(self) -> bool:
        """Whether the database keeps up: its calls answer and the answers get recorded."""
        return self._db_answers.is_set() and self._backlog.is_set()

    async def database_answers(self) -> None:
        """Wait while database calls are failing and being tried again, or hang, or the
        answers of more than a batch wait to be recorded."""
        while not self.may_send and not self._db_failed:
            await self._db_answers.wait()
            await self._backlog.wait()

    # -- the shared rate limit ------------------------------------------------------------

    def _book(self) -> None:
        """Book more slots in the background, unless a booking is on its way."""
        if self.rate is not None and (self._booking is None or self._booking.done()):
            self._booking = asyncio.ensure_future(self.db(self.rate.refill))

    def slot_now(self) -> bool:
        """Whether a message may start now (without waiting)."""
        if self.rate is None:
            return True
        wait = self.rate.wait_time()
        if wait is None:
            self._book()
            return False
        return wait <= 0

    def take_slot(self) -> None:
        if self.rate is not None:
            self.rate.take()
            if len(self.rate.slots) <= self.rate.chunk // 2:
                self._book()  # the next run arrives before this one is used up

    async def slot(self) -> None:
        """Wait for a slot of the shared rate limit, and take it."""
        if self.rate is None:
            return
        while True:
            wait = self.rate.wait_time()
            if wait is None:
                self._book()
                booking = self._booking
                if booking is not None:
                    await asyncio.wait([booking])
                    if booking.exception() is not None:
                        raise booking.exception()  # type: ignore[misc]
                continue
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self.take_slot()
            return

    def give_back(self, row: Claimed, reason: str = "send stopped") -> None:
        """Return a claimed row to pending, unsent (not an attempt)."""
        self.add_result(Result(row, "release", None, reason))

    def add_result(self, result: Result) -> None:
        if self.journal is not None:
            try:
                self.journal.write(result)  # first: a kill after this line loses nothing
            except OSError as exc:  # a full disk: no answer may go unwritten, so stop
                self.journal = None
                self.fail(
                    disk_fault(
                        exc,
                        path=self.pub.state_dir / "journal",
                        unchanged="the send stopped; run it again to go on",
                        error=SendError,
                    )
                    or SendError(f"the send journal cannot be written: {exc}")
                )
        self.results.append(result)
        if len(self.results) >= self.policy.batch:
            self._results_ready.set()
            # A recorder that cannot keep up (a database that hangs) holds the connections
            # back: at most one batch of answers waits beyond the one being written.
            self._backlog.clear()

    # -- the run -------------------------------------------------------------------------

    def interrupt(self) -> None:
        """SIGINT/SIGTERM: stop claiming, finish and record what is in flight. A second
        signal is left to Python's default (the next run recovers the claimed rows)."""
        self.stats.interrupted = True
        self._remove_signal_handlers()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        self._signals: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.interrupt)
                self._signals.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                pass

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in getattr(self, "_signals", []):
            loop.remove_signal_handler(sig)
        self._signals = []

    async def run(self) -> RunStats:
        started = time.perf_counter()
        try:
            self.journal = Journal(self.pub, self.slug, self.me)
        except OSError as exc:
            fault = disk_fault(
                exc,
                path=self.pub.state_dir / "journal",
                unchanged="nothing was sent",
                error=SendError,
            )
            if fault is None:
                raise
            raise fault from None
        self._install_signal_handlers()
        try:
            recorder = asyncio.create_task(self._recorder())
            workers = [asyncio.create_task(self._worker(n)) for n in range(self.policy.concurrency)]
            try:
                await self._producer()
            except MastheadError as exc:
                self.fail(exc)
            finally:
                for _ in workers:
                    await self.queue.put(None)
                await asyncio.gather(*workers)
                self._stop = True
                self._results_ready.set()
                await recorder
        finally:
            self._remove_signal_handlers()
            self._db.shutdown(wait=True)
            if self.journal is not None:
                self.journal.close(all_recorded=self.stats.unrecorded == 0 and not self.results)
        self.stats.seconds = time.perf_counter() - started
        if self.fatal is not None:
            if self.stats.unrecorded:
                kept = (
                    f"the journal {self.journal.path} keeps them, and the next run on this "
                    "machine records them (their messages are not sent again)"
                    if self.journal is not None
                    else "their messages may be sent again when the send goes on"
                )
                self.fatal.message += (
                    f"; {self.stats.unrecorded:,} answers of this run could not be recorded: "
                    + kept
                )
            raise self.fatal
        return self.stats

    async def _producer(self) -> None:
        p = self.policy
        while self.fatal is None:
            started = time.monotonic()
            rows = await self.db(
                outbox.claim, self.store, self.slug, self.me, p.batch, p.lease, self.after
            )
            if self.leased_from is None:
                self.leased_from = started
            if rows:
                self.after = max(self.after, max(row.id for row in rows))
            if rows is not None and self.stats.interrupted:
                for row in rows:
                    self.in_flight += 1
                    self.give_back(row, "interrupted")
                rows = None
            if rows is None:  # paused or interrupted: what is queued goes back to pending
                self.stats.paused = not self.stats.interrupted
                while not self.queue.empty():
                    job = self.queue.get_nowait()
                    if job is not None:
                        self.give_back(job[0], "stopped")
                return
            if not rows:
                if self.in_flight > 0:
                    await asyncio.sleep(0.05)
                    continue
                due, sending = await self.db(outbox.waiting, self.store, self.slug)
                if due is None:
                    # rows another sender holds: wait for them (and take them over if it dies)
                    if not sending:
                        return
                    # What senders that died meanwhile heard from the server, before their
                    # rows come back (a sender killed beside this one).
                    replayed = await self.db(
                        replay, self.pub, self.store, self.slug, self.msgid_parts
                    )
                    self.stats.replayed += replayed.answers
                    # Nothing is in flight here, so rows still marked with this sender's own
                    # claim are orphans (a claim whose commit reply was lost): back with them.
                    taken = await self.db(
                        functools.partial(outbox.recover, orphans_of=self.me),
                        self.store,
                        self.slug,
                    )
                    self.stats.recovered += taken
                    if taken and self.progress is not None:
                        self.progress(self.stats)
                    await asyncio.sleep(0.25)
                    continue
                wait = (due - utcnow()).total_seconds()
                await asyncio.sleep(min(max(wait, 0.01), 1.0))
                continue
            for row in rows:
                self.in_flight += 1
                if self.stopping:
                    self.give_back(row)
                    continue
                job = self._job(row)
                if job is not None:
                    await self.queue.put(job)

    def _job(self, row: Claimed) -> tuple[Any, ...] | None:
        pub = self.pub
        message_id = f"{self.msgid_parts[0]}{row.id}{self.msgid_parts[1]}"
        try:
            mailto = unsubscribe_mailto(pub, row.subscriber_id, row.email) or ""
            recipient = Recipient(
                email=row.email,
                name=row.name or "",
                unsubscribe_url=unsubscribe_url(pub, row.subscriber_id, row.email),
                unsubscribe_mailto=mailto,
                message_id=message_id,
            )
            data = self.templates(row.language).wire(recipient)
        except RecipientError as exc:
            self.add_result(Result(row, "failed", None, exc.message))
            return None
        sender = verp_address(pub, row.subscriber_id, row.email) or ""
        return (row, sender, row.email, data)

    async def _worker(self, n: int) -> None:
        jobs = _Jobs(self)
        try:
            await self._connection_loop(jobs)
        except Exception as exc:  # a bug must not strand the queue: the others drain it
            self.fail(SendError(f"a sending connection failed: {exc!r}"))
            await self._drain(jobs)

    async def _connection_loop(self, jobs: _Jobs) -> None:
        failures = 0
        while not jobs.finished:
            conn = SmtpConnection(self.settings)
            try:
                await conn.open()
            except SmtpError as exc:
                failures += 1
                if failures >= 5 or (self.stats.sent == 0 and failures >= 2):
                    self.fail(exc)
                    await self._drain(jobs)
                    return
                await asyncio.sleep(min(2**failures, 30) * 0.25)
                continue
            failures = 0
            try:
                await conn.send_many(jobs, self._on_outcome)
            finally:
                if jobs.finished or self.fatal is not None:
                    await conn.close()
                else:
                    conn.abort()
            if self.fatal is not None:
                await self._drain(jobs)
                return

    async def _drain(self, jobs: _Jobs) -> None:
        """After a fatal error: give back every queued row (not an attempt)."""
        while True:
            job = jobs.next_nowait() if not jobs.finished else None
            if job is None:
                if jobs.finished:
                    return
                job = await self.queue.get()
                if job is None:
                    jobs.finished = True
                    return
            self.give_back(job[0])

    def fail(self, exc: MastheadError) -> None:
        """End the run with ``exc``: no more claims, what is queued goes back."""
        if self.fatal is None:
            self.fatal = exc

    def _on_outcome(self, row: Claimed, o: Outcome) -> None:
        msgid = None  # recorded from the row id (outbox.record)
        now = utcnow()
        if o.state == "sent":
            self.add_result(Result(row, "sent", o.code, o.message, msgid))
        elif o.state == "unknown":
            self.add_result(Result(row, "unknown", o.code, o.message, msgid))
        elif o.state == "retry":
            at = now if row.attempts < 3 else now + timedelta(seconds=self._backoff(row))
            self.add_result(Result(row, "retry", o.code, f"{o.at}: {o.message}", None, at))
        elif o.state == "temporary":
            age = (now - self.created_at).total_seconds()
            if age > self.policy.max_age:
                error = f"gave up after {row.attempts + 1} attempts: {o.code} {o.message}"
                self.add_result(Result(row, "failed", o.code, error, msgid))
            else:
                at = now + timedelta(seconds=self._backoff(row))
                self.add_result(Result(row, "retry", o.code, f"{o.at}: {o.message}", None, at))
        elif o.at == "MAIL":  # the server refuses the sender: not the reader's fault
            self.add_result(Result(row, "release", o.code, o.message))
            self.fail(
                SmtpError(
                    f"the mail server refuses the sender: {o.code} {o.message}",
                    fix="check [email] from and the [smtp] account's right to send as it",
                )
            )
        elif o.bounce:
            self.add_result(Result(row, "bounced", o.code, o.message, msgid))
        else:
            self.add_result(Result(row, "failed", o.code, f"{o.at}: {o.message}", msgid))

    def _backoff(self, row: Claimed) -> float:
        return outbox.backoff(row.attempts + 1, self.policy.retry_base, self.policy.retry_cap)

    async def _recorder(self) -> None:
        last_renew = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._results_ready.wait(), self.policy.commit_every)
            self._results_ready.clear()
            batch, self.results = self.results, []
            self._backlog.set()
            try:
                if batch:
                    await self.db(outbox.record, self.store, self.me, batch, self.msgid_parts)
                if time.monotonic() - last_renew > self.policy.lease / 5:
                    started = time.monotonic()
                    await self.db(outbox.renew_lease, self.store, self.me, self.policy.lease)
                    last_renew = self.leased_from = started
            except MastheadError as exc:
                # Unrecorded answers: their rows stay claimed by this sender, and the journal
                # has the answers; the next sender on this machine records them from it
                # before putting the rows back (another machine, after the lease, cannot).
                self.fail(exc)
                self.stats.unrecorded += len(batch)
            self._count(batch)
            if self.progress is not None:
                self.progress(self.stats)
            if self._stop and not self.results:
                return

    def _count(self, batch: list[Result]) -> None:
        s = self.stats
        for r in batch:
            if r.state == "sent":
                s.sent += 1
            elif r.state == "failed":
                s.failed += 1
            elif r.state == "bounced":
                s.bounced += 1
            elif r.state == "unknown":
                s.unknown += 1
            elif r.state == "retry":
                s.retried += 1
            self.in_flight -= 1


def _transient(exc: DBAPIError) -> bool:
    """A database error worth trying again: a lost or refused connection, a server shutting
    down or in recovery, a deadlock or serialisation failure (PostgreSQL's
    ``TransactionRollbackError`` is an ``OperationalError``), SQLite's busy lock."""
    return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
