"""Shared fixtures: the bundled demo is the main test publication; PDFs are read back for real."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from masthead.scaffold import copy_demo

# ----------------------------------------------------------------------------------------
# The database. By default each publication keeps its own SQLite file. With
# MASTHEAD_TEST_POSTGRES=postgresql://user:pw@127.0.0.1/db (what `.ci/run` does for the
# second run of the suite), every test gets a fresh PostgreSQL schema of that database
# instead, through MASTHEAD_DATABASE_URL, which subprocesses inherit: the same tests, on
# the other backend.

POSTGRES = os.environ.get("MASTHEAD_TEST_POSTGRES", "")


def postgres_schema_url(base: str, schema: str) -> str:
    """``base`` with every connection's search_path set to ``schema``."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(autouse=True)
def database(monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """The test's database URL (None: each publication's own SQLite file)."""
    if not POSTGRES:
        monkeypatch.delenv("MASTHEAD_DATABASE_URL", raising=False)
        yield None
        return
    import uuid

    import psycopg

    from masthead.store import dispose_engines

    schema = f"test_{uuid.uuid4().hex[:16]}"
    conninfo = POSTGRES.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = postgres_schema_url(POSTGRES, schema)
    monkeypatch.setenv("MASTHEAD_DATABASE_URL", url)
    try:
        yield url
    finally:
        dispose_engines()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


sqlite_only = pytest.mark.skipif(
    bool(POSTGRES), reason="about the SQLite file itself; the PostgreSQL run has no such file"
)


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A fresh copy of the bundled demo publication (not built)."""
    return copy_demo(tmp_path / "demo")


@pytest.fixture(scope="session")
def built_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo, built once for the tests that only read its output."""
    from masthead.build import build

    root = copy_demo(tmp_path_factory.mktemp("built") / "demo")
    build(root)
    return root


@pytest.fixture
def site_root(built_demo: Path, tmp_path: Path) -> Path:
    """A copy of the built demo whose editor's app has a password (editor_kit.PASSWORD)."""
    from editor_kit import set_password

    root = copy_tree(built_demo, tmp_path / "demo")
    set_password(root)
    return root


def pdf_page_texts(path: Path) -> list[str]:
    """The text of each page, extracted by PDFium (the engine of Chrome's PDF viewer)."""
    import pypdfium2

    pdf = pypdfium2.PdfDocument(str(path))
    try:
        return [page.get_textpage().get_text_range() for page in pdf]
    finally:
        pdf.close()


def normalise(text: str) -> str:
    """Undo line breaking for comparison: soft hyphens and hyphenation at line ends go,
    runs of white space become one space."""
    text = text.replace("\r\n", "\n").replace("\ufffe", "")
    text = re.sub(r"[\u00ad\u2010-]\s*\n\s*", "", text)  # hyphenated line ends
    text = text.replace("\u00ad", "").replace("\u2060", "")
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
    text = text.replace("\u201d", '"')
    return re.sub(r"\s+", " ", text).strip()


def write_item(folder: Path, name: str, front: str, body: str = "Some text.") -> Path:
    path = folder / name
    path.write_text(f"---\n{front.strip()}\n---\n\n{body}\n", "utf-8")
    return path


def make_publication(root: Path, *, paper: str = "a4", items: dict[str, str] | None = None) -> Path:
    """A small publication with one issue, `2020-03`, holding ``items`` (name → file text)."""
    (root / "issues" / "2020-03").mkdir(parents=True)
    (root / "masthead.toml").write_text(
        f'name = "Test Bulletin"\ntagline = "For tests"\npaper = "{paper}"\n'
        '[publisher]\nname = "Testers"\nabout = "We test."\n',
        "utf-8",
    )
    (root / "issues" / "2020-03" / "issue.toml").write_text(
        "volume = 1\nnumber = 2\ndate = 2020-03-01\n", "utf-8"
    )
    if items is None:
        items = {"a.md": "---\ntitle: A\n---\n\nText.\n"}
    for name, text in items.items():
        (root / "issues" / "2020-03" / name).write_text(text, "utf-8")
    return root


def site_snapshot(site: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(site)): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()
    }


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------------------------------
# A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives, for the
# subscriber tests (confirmation emails).


class MailSink:
    """Messages received by an aiosmtpd server: (envelope sender, recipients, message)."""

    def __init__(self) -> None:
        import threading

        self.received: list[tuple[str, list[str], object]] = []
        self.lock = threading.Lock()
        self.port = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        from email import message_from_bytes
        from email.policy import default

        msg = message_from_bytes(envelope.content, policy=default)  # type: ignore[attr-defined]
        with self.lock:
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), msg))  # type: ignore[attr-defined]
        return "250 OK"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def confirm_sink():
    """An SMTP server on 127.0.0.1 at ``sink.port``; ``sink.received`` holds the mail."""
    from aiosmtpd.controller import Controller

    sink = MailSink()
    sink.port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def point_smtp_at(root: Path, port: int) -> None:
    """Make the publication at ``root`` send through 127.0.0.1:``port``."""
    toml = root / "masthead.toml"
    text = re.sub(r"(?m)^port = \d+$", f"port = {port}", toml.read_text("utf-8"))
    toml.write_text(text, "utf-8")


# ----------------------------------------------------------------------------------------
# Real disk faults: a small file system of its own (tmpfs) fills up for real, and can be
# remounted read-only. Mounting needs root (or CAP_SYS_ADMIN); without it the tests that
# need one are skipped, saying why.


def _run_quietly(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``small_disk("16m")``: a fresh tmpfs of that size, mounted in the test's folder."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = _run_quietly(
            "mount", "-t", "tmpfs", "-o", f"size={size},mode=755", "tmpfs", str(folder)
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs (needs root): {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        _run_quietly("umount", "-l", str(folder))


def remount(folder: Path, mode: str) -> None:
    """Remount a ``small_disk`` ``ro`` or ``rw``."""
    done = _run_quietly("mount", "-o", f"remount,{mode}", str(folder))
    assert done.returncode == 0, done.stderr


def fill_disk(folder: Path, *, leave: int = 0) -> Path:
    """Fill the file system holding ``folder`` up to ``leave`` free bytes; the filler file."""
    filler = folder / "filler"
    chunk = b"\0" * (1 << 16)
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler
