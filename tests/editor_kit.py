"""Helpers for the editor's-app tests: a password, logging in, reading CSRF tokens, a PNG."""

from __future__ import annotations

import re
import struct
import zlib
from functools import cache
from pathlib import Path

PASSWORD = "correct horse battery staple"


@cache
def password_hash() -> str:
    from masthead.web.auth import hash_password

    return hash_password(PASSWORD)


def set_password(root: Path) -> None:
    """Put ``[serve] admin_password_hash`` into the publication's masthead.toml."""
    toml = root / "masthead.toml"
    text = toml.read_text("utf-8")
    toml.write_text(text + f'\n[serve]\nadmin_password_hash = "{password_hash()}"\n', "utf-8")


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def log_in(client, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    """Log the TestClient in; returns the page after login."""
    page = client.get("/admin/login")
    response = client.post(
        "/admin/login?next=/admin/",
        data={"csrf": csrf_of(page.text), "password": password},
    )
    return response


def png(width: int = 4, height: int = 3) -> bytes:
    """A real, tiny RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + b"\x80\x20\x20" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
