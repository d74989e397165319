"""A connection lost in the middle of DATA (issue 14, point 8). When the end of the message
never left this host, the server cannot have taken it (RFC 5321 4.1.1.4: a message without
its final dot is discarded), so it is retried at once, without --resend-unknown; only a
message whose final dot was sent, with the answer lost, stays ``unknown``.

The server is a real one on 127.0.0.1, written for the fault: it speaks SMTP up to 354,
reads a little of the message, stops reading (so the client's buffers fill), and then cuts
the connection (RST)."""

from __future__ import annotations

import asyncio
import socket
import struct

from masthead.deliver.smtp import SmtpConnection, SmtpSettings, dot_stuff


async def _cutting_server(read_all: bool) -> tuple[asyncio.Server, int]:
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 cut.test ESMTP\r\n")
        while True:
            line = await reader.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-cut.test\r\n250 PIPELINING\r\n")
            elif verb in (b"MAIL", b"RCPT"):
                writer.write(b"250 ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                if read_all:  # the whole message, final dot included; then no answer
                    while (await reader.readline()) not in (b".\r\n", b""):
                        pass
                else:  # a little of it, then nothing more is read
                    await reader.read(1000)
                await asyncio.sleep(0.3)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()  # RST
                return
            await writer.drain()

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
    listener.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(session, sock=listener)
    return server, listener.getsockname()[1]


def _send_one(read_all: bool, size: int) -> str:
    async def run() -> str:
        server, port = await _cutting_server(read_all)
        outcomes = []
        async with server:
            conn = SmtpConnection(SmtpSettings(port=port, timeout=10))
            await conn.open()
            message = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (size // 1000)

            async def jobs():  # type: ignore[no-untyped-def]
                yield ("row", "news@example.org", "reader@example.org", dot_stuff(message))

            await conn.send_many(jobs(), lambda _key, outcome: outcomes.append(outcome))
            conn.abort()
        return outcomes[0].state

    return asyncio.run(run())


def test_a_message_cut_before_its_end_left_is_retried_not_unknown() -> None:
    """Regression: every reader whose message was cut off mid-DATA waited for a manual
    --resend-unknown, though the server could not have delivered it."""
    assert _send_one(read_all=False, size=4_000_000) == "retry"


def test_a_message_whose_end_was_sent_stays_unknown() -> None:
    """The final dot reached the server and the answer was lost: it may have been delivered,
    so it is not sent again without the editor's word."""
    assert _send_one(read_all=True, size=20_000) == "unknown"
