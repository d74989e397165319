"""The send journal (issue 14, points 2 and 4): every answer is written down before anything
else, so a sender that is killed or loses its database doubles at most what was on the wire;
a database that hangs holds the connections back within one batch."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from conftest import POSTGRES
from masthead.store import Store
from sendkit import add_subscribers, built_template, open_pub, send_cli, wired_copy
from smtp_sink import SmtpSink

RECIPIENTS = 3000
BATCH = 250  # the send's default batch


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_template(tmp_path_factory.mktemp("journal") / "pub")


@contextmanager
def writes_blocked(store: Store, database: str | None) -> Iterator[None]:
    """Another client holds the outbox's write lock: the sender's database calls hang
    (neither fail nor answer), as with a server gone without closing its connections."""
    if database:
        conn = psycopg.connect(POSTGRES.replace("postgresql+psycopg://", "postgresql://"))
        schema = database.rsplit("search_path%3D", 1)[1]
        conn.execute(f"LOCK TABLE {schema}.outbox IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()
            conn.close()
        return
    path = store.url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_a_hanging_database_stops_the_wire_within_one_batch(
    template: Path, tmp_path: Path, database: str | None
) -> None:
    """Regression: workers went on sending what they had queued after the database stopped
    answering (1,750-2,000 messages in the first second of an outage)."""
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, RECIPIENTS)
        sender = send_cli(root)
        deadline = time.monotonic() + 60
        while len(sink.messages) < 200:
            assert time.monotonic() < deadline and sender.poll() is None
            time.sleep(0.005)
        with writes_blocked(store, database):
            at_block = len(sink.messages)
            time.sleep(3)
            during = len(sink.messages) - at_block
        out, err = sender.communicate(timeout=120)
        received = sink.by_recipient()
    assert sender.returncode == 0, out + err
    # one batch of answers may wait for the recorder, beyond the one it is writing, plus
    # a message per connection on the wire
    assert during <= 2 * BATCH + 3, during
    assert set(received) == set(addresses) and max(received.values()) == 1


def test_a_clean_run_leaves_no_journal_and_a_killed_one_is_replayed(
    template: Path, tmp_path: Path
) -> None:
    import signal

    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, RECIPIENTS)
        sender = send_cli(root)
        deadline = time.monotonic() + 60
        while len(sink.messages) < RECIPIENTS // 2:
            assert time.monotonic() < deadline and sender.poll() is None
            time.sleep(0.002)
        sender.send_signal(signal.SIGKILL)
        sender.communicate()
        journals = list((root / ".masthead" / "journal").glob("*.log"))
        assert len(journals) == 1
        answered = len(journals[0].read_text("utf-8").splitlines()) - 1
        assert answered > 0
        again = send_cli(root)
        out, err = again.communicate(timeout=120)
        received = sink.by_recipient()
    assert again.returncode == 0, out + err
    assert "recorded from its journal" in out
    assert not list((root / ".masthead" / "journal").glob("*.log"))  # replayed, then cleaned
    assert set(received) == set(addresses)
    twice = [a for a, n in received.items() if n > 1]
    assert len(twice) <= 3  # one per connection, at most: what was on the wire
    if twice:
        assert "may have arrived twice" in out


def test_every_reader_of_a_send_gets_the_issue_as_it_was_when_it_started(
    template: Path, tmp_path: Path
) -> None:
    """Regression (issue 14, point 7): each run rendered the email from the content folder,
    so an edit made during a send reached the readers mailed after it."""
    import signal

    with SmtpSink() as sink:
        root = wired_copy(
            template, tmp_path / "pub", sink.port, extra_smtp="rate_per_minute = 1200\n"
        )
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, 60)
        first = send_cli(root)
        deadline = time.monotonic() + 60
        while len(sink.messages) < 5:
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.01)
        first.send_signal(signal.SIGTERM)  # stopped mid-send; the editor edits meanwhile
        first.communicate(timeout=60)
        item = root / "issues" / "2020-03" / "notes.md"
        item.write_text(
            item.read_text("utf-8").replace("The river is high", "EDITED LATER"), "utf-8"
        )
        again = send_cli(root)
        out, err = again.communicate(timeout=120)
        bodies = [m.parsed().get_body(("plain",)).get_content() for m in sink.messages]
    assert again.returncode == 0, out + err
    assert set(sink.by_recipient()) == set(addresses)
    assert len(bodies) >= 60
    assert not [b for b in bodies if "EDITED LATER" in b]
    assert all("The river is high" in b for b in bodies)


@pytest.mark.parametrize("leave", [0, 12_000])
def test_a_full_disk_under_the_journal_stops_the_send_with_a_message(
    template: Path, tmp_path: Path, small_disk, leave: int
) -> None:
    """No answer may go unwritten: a journal that cannot be written (a full disk) stops the
    send with one message naming the folder, before anything is sent (leave=0) or within a
    batch; freed, the next run goes on and nobody is lost."""
    from conftest import fill_disk

    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, 2000)
        disk = small_disk("1m")
        filler = fill_disk(disk, leave=leave)
        (root / ".masthead" / "journal").symlink_to(disk, target_is_directory=True)
        first = send_cli(root)
        out, err = first.communicate(timeout=120)
        assert first.returncode == 1, out + err
        assert "Traceback" not in err and "cannot write here" in err, err
        if leave == 0:
            assert len(sink.messages) == 0
        filler.unlink()
        again = send_cli(root)
        out, err = again.communicate(timeout=120)
        received = sink.by_recipient()
    assert again.returncode == 0, out + err
    assert set(received) == set(addresses)
    assert sum(n > 1 for n in received.values()) <= 3
