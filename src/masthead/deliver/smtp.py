"""A small SMTP client for bulk sending: one connection, reused for many messages, with
command pipelining (RFC 2920) when the server offers it.

Per message the client writes ``MAIL FROM``, ``RCPT TO`` and ``DATA`` in one go; after the
``354`` it writes the message *and* the next message's three commands, then reads the four
replies together. One round trip per message instead of four is what lets a handful of
connections carry thousands of messages a second.

Every transaction ends in an :class:`Outcome`:

* ``sent``: 2xx after the final dot;
* ``temporary``: a 4xx reply (retry later; ``421`` also closes the connection);
* ``permanent``: a 5xx reply (see :attr:`Outcome.bounce` for whether the address is bad);
* ``retry``: the connection failed before the message content was written: nothing can have
  been delivered, try again at once on a fresh connection;
* ``unknown``: the connection failed *after* the final dot was written and before the reply:
  the server may or may not have accepted the message.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
from dataclasses import dataclass

from ..errors import SmtpError
from ..render.email.message import dot_stuff

__all__ = ["ConnectionLost", "Outcome", "Reply", "SmtpConnection", "SmtpSettings", "dot_stuff"]


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 25
    security: str = "none"
    """"none", "starttls" or "tls"."""
    username: str = ""
    password: str = ""
    timeout: float = 60.0
    helo_name: str = ""
    ssl_context: ssl.SSLContext | None = None
    """For tests and private CAs; default: the system's trusted CAs, host name checked."""


@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


@dataclass(frozen=True)
class Outcome:
    state: str
    """"sent", "temporary", "permanent", "retry" or "unknown"."""
    code: int | None = None
    message: str = ""
    at: str = ""
    """Which step answered: "connect", "MAIL", "RCPT", "DATA" or "end of data"."""

    @property
    def bounce(self) -> bool:
        """A permanent refusal of the *address*: a 5xx to RCPT, or after the data with an
        enhanced status code 5.1.x (bad mailbox) or 5.2.1 (mailbox disabled). Policy refusals
        (5.7.x: relaying denied, authentication) and content refusals are not bounces."""
        if self.state != "permanent":
            return False
        enhanced = re.match(r"5\.(\d{1,3})\.(\d{1,3})", self.message)
        if enhanced and enhanced.group(1) == "7":
            return False
        if self.at == "RCPT":
            return True
        return bool(enhanced and (enhanced.group(1) == "1" or enhanced.group(0) == "5.2.1"))


class ConnectionLost(Exception):
    """The server closed the connection or stopped answering."""


SIOCOUTQNSD = 0x894B
"""Linux: bytes in a socket's send queue not yet sent (see :meth:`SmtpConnection.unsent_bytes`)."""


class SmtpConnection:
    """One SMTP session. Use :meth:`open`, then :meth:`send` (one message) or
    :meth:`send_many` (a pipelined stream), then :meth:`close`."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.extensions: dict[str, str] = {}
        self.closed = True
        self._data_written = False
        self._next_job: tuple | None = None  # type: ignore[type-arg]
        self._tail = 0
        """Bytes written after the message's final dot in the same write (the next
        envelope)."""
        self._unsent_at_loss = 0
        """Bytes still on this host (never sent) when the connection was lost."""

    # -- session -------------------------------------------------------------------------

    async def open(self) -> None:
        s = self.settings
        context = s.ssl_context or ssl.create_default_context()
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(
                    s.host,
                    s.port,
                    ssl=context if s.security == "tls" else None,
                    limit=1 << 20,
                ),
                s.timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise SmtpError(
                f"cannot connect to the mail server {s.host}:{s.port}: {exc}",
                fix="check [smtp] host, port and security in masthead.toml",
            ) from None
        self.closed = False
        try:
            await self._setup()
        except ConnectionLost as exc:
            self.abort()
            raise SmtpError(
                f"the mail server {s.host}:{s.port} ended the session while it was being set up: "
                f"{exc}",
                fix="check [smtp] port and security (TLS on a plain port, or the reverse?)",
            ) from None
        except SmtpError:
            self.abort()
            raise

    async def _setup(self) -> None:
        s = self.settings
        context = s.ssl_context or ssl.create_default_context()
        sock = self.writer.get_extra_info("socket")  # type: ignore[union-attr]
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await self._expect(await self.read_reply(), 220, "greeting")
        await self._ehlo()
        if s.security == "starttls":
            if "STARTTLS" not in self.extensions:
                raise SmtpError(
                    f"{s.host}:{s.port} does not offer STARTTLS",
                    fix='use security = "tls" (port 465) or "none" for a local relay',
                )
            await self.command(b"STARTTLS", 220)
            assert self.writer is not None
            await self.writer.start_tls(context, server_hostname=s.host)
            await self._ehlo()
        if s.username:
            await self._auth()

    async def _ehlo(self) -> None:
        name = self.settings.helo_name or socket.getfqdn() or "localhost"
        self.write(b"EHLO " + name.encode("idna") + b"\r\n")
        reply, lines = await self.read_reply(with_lines=True)
        if reply.code != 250:
            self.write(b"HELO " + name.encode("idna") + b"\r\n")
            await self._expect(await self.read_reply(), 250, "HELO")
            self.extensions = {}
            return
        self.extensions = {}
        for line in lines[1:]:
            keyword, _, params = line.partition(" ")
            self.extensions[keyword.upper()] = params

    async def _auth(self) -> None:
        s = self.settings
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        if "PLAIN" in mechanisms:
            token = base64.b64encode(f"\0{s.username}\0{s.password}".encode()).decode()
            await self.command(f"AUTH PLAIN {token}".encode(), 235, what="authentication")
        elif "LOGIN" in mechanisms:
            await self.command(b"AUTH LOGIN", 334, what="authentication")
            await self.command(base64.b64encode(s.username.encode()), 334, what="authentication")
            await self.command(base64.b64encode(s.password.encode()), 235, what="authentication")
        else:
            raise SmtpError(
                f"{s.host}:{s.port} offers no AUTH PLAIN or LOGIN (it offers "
                f"{' '.join(mechanisms) or 'no AUTH at all'})",
                fix='use security = "starttls" or "tls": many servers offer AUTH only over TLS',
            )

    async def command(self, line: bytes, expect: int, *, what: str = "") -> Reply:
        self.write(line + b"\r\n")
        reply = await self.read_reply()
        await self._expect(reply, expect, what or line.split()[0].decode())
        return reply

    async def _expect(self, reply: Reply, code: int, what: str) -> None:
        if reply.code != code:
            raise SmtpError(
                f"the mail server refused {what}: {reply}",
                fix="check [smtp] in masthead.toml (and MASTHEAD_SMTP_PASSWORD for AUTH)",
            )

    async def close(self) -> None:
        if self.writer is None or self.closed:
            return
        self.closed = True
        try:
            self.writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self.writer.drain(), 2)
            await asyncio.wait_for(self.reader.readline(), 2)  # type: ignore[union-attr]
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        self.abort()

    def unsent_bytes(self) -> int:
        """Bytes written to this connection that have not left this host: in the
        transport's buffer, or in the kernel's send queue not yet sent (``SIOCOUTQNSD``;
        bytes sent but not acknowledged may have arrived, so they do not count)."""
        if self.writer is None:
            return 0
        transport = self.writer.transport
        unsent = transport.get_write_buffer_size() if not transport.is_closing() else 0
        sock = self.writer.get_extra_info("socket")
        try:
            import fcntl
            import struct

            if sock is not None and sock.fileno() >= 0:
                queued = fcntl.ioctl(sock.fileno(), SIOCOUTQNSD, b"\0" * 4)
                unsent += struct.unpack("i", queued)[0]
        except (OSError, ImportError, ValueError):
            pass
        return unsent

    def abort(self) -> None:
        self.closed = True
        if self.writer is not None:
            self.writer.close()

    # -- I/O -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.writer is not None
        if self.writer.is_closing():
            raise ConnectionLost("connection closed")
        self.writer.write(data)

    async def read_reply(self, *, with_lines: bool = False, timeout: bool = True):  # type: ignore[no-untyped-def]
        """The next reply (all lines of a multi-line one); ``with_lines``: also each line.
        ``timeout=False`` when the caller holds a timeout around a whole transaction."""
        try:
            if timeout:  # asyncio.timeout, not wait_for: no task per reply
                async with asyncio.timeout(self.settings.timeout):
                    code, lines = await self._read_lines()
            else:
                code, lines = await self._read_lines()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            self.abort()
            raise ConnectionLost(str(exc) or type(exc).__name__) from None
        if code == 421:
            self.closed = True  # the server is closing this session
        reply = Reply(code, " ".join(lines))
        return (reply, lines) if with_lines else reply

    async def _read_lines(self) -> tuple[int, list[str]]:
        assert self.reader is not None and self.writer is not None
        lines: list[str] = []
        await self.writer.drain()
        while True:
            raw = await self.reader.readline()
            if not raw.endswith(b"\n"):
                raise ConnectionLost("connection closed by the server")
            if len(raw) < 5 or not raw[:3].isdigit():
                raise ConnectionLost(f"malformed reply {raw[:100]!r}")
            lines.append(raw[4:].decode("utf-8", "replace").rstrip("\r\n"))
            if raw[3:4] != b"-":
                return int(raw[:3]), lines

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.extensions

    # -- transactions --------------------------------------------------------------------

    async def _replies(self, job, prewritten: bool):  # type: ignore[no-untyped-def]
        """The replies to MAIL, RCPT and DATA: already written (pipelined) or one by one."""
        if not prewritten:
            if self.pipelining:
                self.write(self._envelope(job[1], job[2]))
            else:
                self.write(f"MAIL FROM:<{job[1]}>\r\n".encode("ascii"))
                mail = await self.read_reply(timeout=False)
                if mail.code >= 400:
                    return mail, mail, mail
                self.write(f"RCPT TO:<{job[2]}>\r\n".encode("ascii"))
                rcpt = await self.read_reply(timeout=False)
                if rcpt.code >= 400:
                    return mail, rcpt, rcpt
                self.write(b"DATA\r\n")
                return mail, rcpt, await self.read_reply(timeout=False)
        mail = await self.read_reply(timeout=False)
        rcpt = await self.read_reply(timeout=False) if mail.code != 421 else mail
        data = await self.read_reply(timeout=False) if rcpt.code != 421 else rcpt
        return mail, rcpt, data

    def _envelope(self, sender: str, recipient: str) -> bytes:
        # messages are 7-bit (quoted-printable, encoded words): no BODY= parameter needed
        return f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode("ascii")

    async def send_many(self, jobs, on_outcome) -> None:  # type: ignore[no-untyped-def]
        """Send ``(key, sender, recipient, wire)`` jobs taken from the async iterator ``jobs``
        (``wire``: the message dot-stuffed and terminated, see :func:`dot_stuff`) and call
        ``on_outcome(key, outcome)`` for each. If ``jobs`` has ``next_nowait()``, the next
        envelope is pipelined behind each message. Returns when ``jobs`` is exhausted or the
        connection can no longer be used; every job taken has had its outcome by then."""
        job = await anext(jobs, None)
        prewritten = False
        while job is not None:
            self._data_written = False
            self._next_job = None
            self._tail = 0
            self._unsent_at_loss = 0
            try:
                # one timeout for the whole transaction (cheaper than one per reply)
                async with asyncio.timeout(self.settings.timeout):
                    outcome = await self._transaction(jobs, job, prewritten)
            except (ConnectionLost, TimeoutError) as exc:
                if isinstance(exc, TimeoutError):  # the socket is still open: ask the kernel
                    self._unsent_at_loss = max(self._unsent_at_loss, self.unsent_bytes())
                self.abort()
                state = "unknown" if self._data_written else "retry"
                reason = str(exc) or type(exc).__name__
                if state == "unknown" and self._unsent_at_loss > self._tail:
                    # The end of the message never left this host: the server cannot have
                    # taken it (RFC 5321 4.1.1.4: an unterminated message is discarded).
                    state = "retry"
                    reason += " before the end of the message was sent"
                on_outcome(job[0], Outcome(state, None, f"connection lost: {reason}", "DATA"))
                if self._next_job is not None:
                    on_outcome(self._next_job[0], Outcome("retry", None, "connection lost", "MAIL"))
                return
            except SmtpError as exc:  # RSET refused: this session is confused; start afresh
                self.abort()
                on_outcome(job[0], Outcome("retry", None, exc.message, "RSET"))
                return
            on_outcome(job[0], outcome)
            next_job = self._next_job
            if self.closed:  # 421: the server ends the session
                if next_job is not None:
                    on_outcome(next_job[0], Outcome("retry", 421, "connection closed", "MAIL"))
                return
            prewritten = next_job is not None
            job = next_job if prewritten else await anext(jobs, None)

    async def _transaction(self, jobs, job, prewritten: bool) -> Outcome:  # type: ignore[no-untyped-def]
        mail, rcpt, data_reply = await self._replies(job, prewritten)
        if data_reply.code != 354:
            if not self.closed:
                self.write(b"RSET\r\n")
                await self._expect(await self.read_reply(timeout=False), 250, "RSET")
            return _outcome(mail, rcpt, data_reply, None)
        if rcpt.code >= 300:  # a server that says 354 after refusing every recipient
            self.write(b".\r\n")
            await self.read_reply(timeout=False)
            return _outcome(mail, rcpt, data_reply, None)
        if self.pipelining:
            self._next_job = _next_ready(jobs)
        if self._next_job is not None:
            # the data and the next envelope in one write: one segment, so the server answers
            # both in one (separate small writes meet Nagle and delayed ACKs: 40 ms stalls)
            nxt = self._next_job
            envelope = self._envelope(nxt[1], nxt[2])
            self._tail = len(envelope)
            self.write(job[3] + envelope)
        else:
            self.write(job[3])
        self._data_written = True
        await self._hand_over()
        final = await self.read_reply(timeout=False)
        return _outcome(mail, rcpt, data_reply, final)

    async def _hand_over(self) -> None:
        """Wait until the message, to its final dot, has left the transport's buffer for
        the kernel. A connection lost before then cannot have delivered it: note that, so
        the message is retried instead of left ``unknown``."""
        assert self.writer is not None
        transport = self.writer.transport
        transport.set_write_buffer_limits(high=self._tail, low=self._tail)
        try:
            await self.writer.drain()
        except (OSError, ConnectionError) as exc:
            self._unsent_at_loss = self._tail + 1  # more than the next envelope: the end too
            self.abort()
            raise ConnectionLost(str(exc) or type(exc).__name__) from None


def _next_ready(jobs):  # type: ignore[no-untyped-def]
    """The next job if one is ready without waiting (so a pipelined write never delays the
    reply of the message already sent)."""
    peek = getattr(jobs, "next_nowait", None)
    return None if peek is None else peek()


def _outcome(mail: Reply, rcpt: Reply, data: Reply, final: Reply | None) -> Outcome:
    for reply, step in ((mail, "MAIL"), (rcpt, "RCPT"), (data, "DATA"), (final, "end of data")):
        if reply is None:
            continue
        if reply.code >= 500:
            return Outcome("permanent", reply.code, reply.text, step)
        if reply.code >= 400:
            return Outcome("temporary", reply.code, reply.text, step)
        if step == "end of data" and 200 <= reply.code < 300:
            return Outcome("sent", reply.code, reply.text, step)
    return Outcome("temporary", data.code, data.text, "DATA")
