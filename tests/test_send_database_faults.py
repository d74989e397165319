"""A send whose database fails under it (PostgreSQL, the suite's second run): connections
cut by the server mid-send are tried again and nobody is skipped or mailed twice; a database
that is gone for good stops the send promptly, with a clear error, and the next run carries
on without skipping anyone.

The faults are real: ``pg_terminate_backend`` on the sender's connections, and the test's
schema renamed away under it. SQLite, one machine's file, has no server to lose (its busy
lock is waited for, up to 30 s, inside SQLite itself)."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from conftest import POSTGRES
from masthead.deliver import send_state
from sendkit import SLUG, add_subscribers, built_template, open_pub, send_cli, wired_copy
from smtp_sink import SmtpSink

pytestmark = pytest.mark.skipif(
    not POSTGRES, reason="needs a database server to lose (the PostgreSQL run)"
)

RECIPIENTS = 3000


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_template(tmp_path_factory.mktemp("faults") / "pub")


def server() -> psycopg.Connection:
    return psycopg.connect(
        POSTGRES.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    )


def schema_of(url: str) -> str:
    return re.search(r"search_path%3D(\w+)", url).group(1)  # type: ignore[union-attr]


def start_send(template: Path, folder: Path, sink: SmtpSink):  # type: ignore[no-untyped-def]
    """A send to RECIPIENTS readers, under way (300 delivered): (root, store, addresses,
    the sending process)."""
    root = wired_copy(template, folder / "pub", sink.port)
    _, store, _ = open_pub(root)
    addresses = add_subscribers(store, RECIPIENTS)
    sender = send_cli(root, "--lease", "20")
    deadline = time.monotonic() + 60
    while len(sink.messages) < 300:
        assert time.monotonic() < deadline, "the send did not get going"
        assert sender.poll() is None, sender.communicate()
        time.sleep(0.01)
    return root, store, addresses, sender


def test_connections_cut_mid_send_are_tried_again(
    template: Path, tmp_path: Path, database: str
) -> None:
    with SmtpSink() as sink:
        _, store, addresses, sender = start_send(template, tmp_path, sink)
        cuts = 0
        with server() as conn:
            for _ in range(6):  # the sender's connections, ended by the server
                cuts += conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                ).fetchone()[0]
                time.sleep(0.3)
        out, err = sender.communicate(timeout=120)
        received = sink.by_recipient()
    assert cuts >= 6
    assert sender.returncode == 0, out + err
    assert Counter(received.values()) == Counter({1: RECIPIENTS})  # nobody skipped, nor twice
    assert set(received) == set(addresses)
    assert send_state(store, SLUG).complete


def test_a_database_gone_for_good_stops_the_send_and_the_next_run_carries_on(
    template: Path, tmp_path: Path, database: str
) -> None:
    schema = schema_of(database)
    with SmtpSink() as sink:
        root, store, addresses, sender = start_send(template, tmp_path, sink)
        with server() as conn:
            conn.execute(f"ALTER SCHEMA {schema} RENAME TO {schema}_gone")
            try:
                started = time.monotonic()
                out, err = sender.communicate(timeout=60)  # stops: no hang
                took = time.monotonic() - started
                stopped_at = len(sink.messages)
                time.sleep(0.5)
                assert len(sink.messages) == stopped_at  # nothing more goes out
            finally:
                conn.execute(f"ALTER SCHEMA {schema}_gone RENAME TO {schema}")
        assert sender.returncode == 1
        assert "the database failed" in err and "run the same command again" in err, err
        assert took < 30
        assert "answers of this run could not be recorded" not in err or "journal" in err
        again = send_cli(root, "--lease", "20")
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, out + err
        received = sink.by_recipient()
    assert set(received) == set(addresses)  # nobody skipped
    # The answers the failed run could not record were in its journal: the next run records
    # them instead of sending again (issue 14, point 2: a 40 s outage mailed 1,923 of 5,000
    # readers twice)
    twice = [a for a, n in received.items() if n > 1]
    assert twice == []
    assert "recorded from its journal" in out or "could not be recorded" not in err
    assert send_state(store, SLUG).complete
