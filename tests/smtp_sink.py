"""A real SMTP server for the tests (aiosmtpd on 127.0.0.1) that records every message it
accepts and can be told to misbehave.

    with SmtpSink() as sink:            # sink.port
        sink.reject = {"bad@example.org"}          # 550 at RCPT
        sink.tempfail_rcpt = 0.1                   # 451 at RCPT for ~10% of attempts
        sink.drop_connection_every = 50            # 421 and close, every 50th MAIL
        ...
        sink.messages   # [Received(mail_from, rcpt, data, session)], in arrival order

Run it as a script (``python tests/smtp_sink.py PORT``) for a standalone sink, e.g. for the
benchmark's aiosmtpd comparison.
"""

from __future__ import annotations

import email
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt: str
    data: bytes
    session: int
    at: float = field(default_factory=time.monotonic)
    """When the sink accepted it (``time.monotonic()``)."""

    def parsed(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SinkHandler:
    messages: list[Received] = field(default_factory=list)
    reject: set[str] = field(default_factory=set)
    """Addresses refused with 550 5.1.1 at RCPT."""
    tempfail_rcpt: float = 0.0
    """Fraction of RCPTs answered 451 4.3.0 (seeded: see ``seed``)."""
    drop_connection_every: int = 0
    """Every Nth MAIL FROM is answered 421 and the connection closed."""
    drop_after_data: set[str] = field(default_factory=set)
    """Recipients whose message is *stored* and then the connection closed with no reply
    (a reply lost after DATA: the sender must record ``unknown``)."""
    pipelining: bool = True
    seed: int = 0
    attempts: Counter[str] = field(default_factory=Counter)
    """RCPT attempts per address."""
    mails: int = 0
    sessions: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname
        with self.lock:
            self.sessions += 1
            session.sink_id = self.sessions
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]
        with self.lock:
            self.mails += 1
            drop = self.drop_connection_every and self.mails % self.drop_connection_every == 0
        if drop:
            server.loop.call_soon(server.transport.close)
            return "421 4.3.2 closing this connection (test)"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        with self.lock:
            self.attempts[address] += 1
            temp = self.tempfail_rcpt and self.random.random() < self.tempfail_rcpt
        if address in self.reject:
            return "550 5.1.1 no such user (test)"
        if temp:
            return "451 4.3.0 try again later (test)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.messages.append(
                    Received(envelope.mail_from, rcpt, data, getattr(session, "sink_id", 0))
                )
        if any(r in self.drop_after_data for r in envelope.rcpt_tos):
            server.transport.abort()
            return "250 OK (never seen: the connection is gone)"
        return "250 2.0.0 OK queued"


class _Controller(Controller):
    def factory(self):  # type: ignore[no-untyped-def]
        return SMTP(self.handler, decode_data=False, enable_SMTPUTF8=False, hostname="sink.test")


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 in a background thread (a context manager)."""

    def __init__(self, handler: SinkHandler | None = None, port: int | None = None) -> None:
        self.handler = handler or SinkHandler()
        self.port = port or free_port()
        self.controller = _Controller(
            self.handler, hostname="127.0.0.1", port=self.port, data_size_limit=0
        )

    def __enter__(self) -> SmtpSink:
        start_on_a_free_port(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.handler, name)

    def __setattr__(self, name: str, value: object) -> None:
        if name in ("handler", "port", "controller"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.handler, name, value)

    def by_recipient(self) -> Counter[str]:
        return Counter(m.rcpt for m in self.handler.messages)


def start_on_a_free_port(owner) -> None:  # type: ignore[no-untyped-def]
    """Start ``owner.controller``; if its port was taken meanwhile (other tests pick free ports
    too), try again on another one."""
    for attempt in range(5):
        try:
            owner.controller.start()
            return
        except (OSError, RuntimeError):
            if attempt == 4:
                raise
            owner.controller.stop(no_assert=True)
            owner.port = free_port()
            owner.controller.port = owner.port


def start_controller(make: Callable[[int], Controller], attempts: int = 5) -> Controller:
    """``make(port)`` for a free port of 127.0.0.1, started, and returned (its ``port`` is
    where it listens). If that port was taken between picking and binding (other tests pick
    free ports too), a new controller from ``make`` tries another port."""
    for attempt in range(attempts):
        controller = make(free_port())
        try:
            controller.start()
            return controller
        except (OSError, RuntimeError):
            if attempt == attempts - 1:
                raise
            controller.stop(no_assert=True)
    raise AssertionError("unreachable")


class _Discard(list):  # type: ignore[type-arg]
    """A message list that keeps only the count (long benchmark runs)."""

    count_received = 0

    def append(self, item: object) -> None:
        self.count_received += 1


class _Log(list):  # type: ignore[type-arg]
    """A message list that writes each recipient to a file, flushed before the sink answers
    250 (what a sink killed with its host had accepted stays on record)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the run)

    def append(self, item: Received) -> None:  # type: ignore[override]
        self.file.write(item.rcpt + "\n")
        self.file.flush()


if __name__ == "__main__":
    # A standalone sink: python tests/smtp_sink.py PORT [--log FILE] [--ready FILE]
    import argparse
    import pathlib
    import time

    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--log", help="append each recipient to FILE (else count only)")
    parser.add_argument("--ready", help="create FILE once listening")
    args = parser.parse_args()
    sink = SmtpSink(SinkHandler(), port=args.port)
    sink.handler.messages = _Log(args.log) if args.log else _Discard()  # type: ignore[assignment]
    with sink:
        if args.ready:
            pathlib.Path(args.ready).touch()
        while True:
            time.sleep(3600)
