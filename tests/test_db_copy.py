"""`masthead db copy`: a publication's database moved to another server without losing a row.

The source is always a SQLite file (the laptop the list outgrew). The destination is the
test's PostgreSQL schema when the suite runs on PostgreSQL, else a second SQLite file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from masthead.content import load_publication
from masthead.deliver.outbox import create_send
from masthead.store import dispose_engines, get_engine, open_store, schema
from masthead.store import subscriber_list as subs
from masthead.store.copy import copied_tables

NAMES = ["Ada Lovelace", "مریم میرزاخانی", "Zoë O'Brien", "Nguyễn Văn A"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "masthead", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def laptop(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite database with subscribers, consent, suppressions, a send and bounces."""
    url = f"sqlite:///{tmp_path / 'laptop.db'}"
    with monkeypatch.context() as m:
        m.setenv("MASTHEAD_DATABASE_URL", url)
        store = open_store(load_publication(demo))
        for i in range(120):
            lang = "fa" if i % 4 == 1 else None
            subs.add(
                store,
                f"reader{i}@example.org",
                name=NAMES[i % len(NAMES)],
                language=lang,
                confirmed=i % 7 != 0,
            )
        subs.suppress(store, "reader3@example.org", "complaint")
        subs.suppress(store, "stranger@example.net", "hard-bounce")
        create_send(store, "2020-03")
        with store.begin() as conn:
            conn.execute(
                schema.bounce_events.insert().values(
                    subscriber_id=5, email="reader5@example.org", kind="soft", detail="4.2.2"
                )
            )
    dispose_engines()
    return url


@pytest.fixture
def server(database: str | None, tmp_path: Path) -> str:
    return database or f"sqlite:///{tmp_path / 'server.db'}"


def _all_rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    engine = get_engine(url)
    out = {}
    with engine.connect() as conn:
        for table in copied_tables():
            key = list(table.primary_key.columns)
            out[table.name] = [tuple(r) for r in conn.execute(select(table).order_by(*key))]
    return out


def test_copy_moves_every_row_and_prints_counts_and_checksums(laptop: str, server: str) -> None:
    done = _cli("db", "copy", "--from", laptop, "--to", server)
    assert done.returncode == 0, done.stderr
    assert "Every row matches" in done.stdout
    lines = {line.split()[0]: line.split() for line in done.stdout.splitlines()[2:] if line.strip()}
    assert lines["subscribers"][1:3] == ["120", "120"]
    assert lines["suppressions"][1:3] == ["2", "2"]
    outbox_rows = int(lines["outbox"][1].replace(",", ""))
    assert outbox_rows > 90
    assert len(lines["all"][-1]) == 16  # the checksum of the whole copy
    before, after = _all_rows(laptop), _all_rows(server)
    assert after == before
    assert after["consent_events"]  # the consent history came along
    assert any(row[3] == "مریم میرزاخانی" for row in after["subscribers"])


def test_the_copy_goes_on_numbering_after_the_copied_ids(
    laptop: str, server: str, demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _cli("db", "copy", "--from", laptop, "--to", server).returncode == 0
    monkeypatch.setenv("MASTHEAD_DATABASE_URL", server)
    store = open_store(load_publication(demo))
    added = subs.add(store, "newcomer@example.org", confirmed=True)
    assert added.subscriber.id == 121
    with store.read() as conn:
        events = conn.execute(select(schema.consent_events.c.id)).scalars().all()
    assert len(events) == len(set(events))


def test_copy_refuses_a_destination_that_holds_rows(laptop: str, server: str) -> None:
    assert _cli("db", "copy", "--from", laptop, "--to", server).returncode == 0
    before = _all_rows(server)
    again = _cli("db", "copy", "--from", laptop, "--to", server)
    assert again.returncode == 1
    assert "already holds rows in" in again.stderr
    assert "subscribers" in again.stderr
    assert "new, empty database" in again.stderr
    assert _all_rows(server) == before


def test_copy_refuses_an_old_source_and_names_the_fix(laptop: str, server: str, demo: Path) -> None:
    engine = get_engine(laptop)
    with engine.begin() as conn:
        conn.execute(schema.schema_version.delete())
        conn.execute(schema.schema_version.insert().values(version=1))
    done = _cli("db", "copy", "--from", laptop, "--to", server)
    assert done.returncode == 1
    assert "schema version 1" in done.stderr
    assert "masthead db upgrade" in done.stderr


def test_copy_from_the_publication_directory_and_status(
    demo: Path, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`masthead db copy DIR --to URL` reads DIR's own database; `db status` shows the new one."""
    src = f"sqlite:///{tmp_path / 'own.db'}"
    monkeypatch.setenv("MASTHEAD_DATABASE_URL", src)
    store = open_store(load_publication(demo))
    subs.add(store, "only@example.org", confirmed=True)
    dispose_engines()
    done = _cli("db", "copy", str(demo), "--to", server)
    assert done.returncode == 0, done.stderr
    monkeypatch.setenv("MASTHEAD_DATABASE_URL", server)
    status = _cli("db", "status", str(demo))
    assert status.returncode == 0, status.stderr
    assert "subscribers" in status.stdout
    assert status.stdout.split("subscribers")[1].split()[0] == "1"
    assert "masthead:masthead@" not in status.stdout  # the password is hidden


def test_text_keys_sorted_by_a_locale_still_match(laptop: str, server: str, database) -> None:  # type: ignore[no-untyped-def]
    """Regression: the checksums compare rows in key order, and a PostgreSQL column sorted
    by a language's collation puts ``a_b@…`` before ``a-b@…`` where SQLite (byte order) puts
    it after: every copy reported a mismatch. Keys are now compared in byte order on both
    sides. (The suppressions key is given such a collation here; SQLite has none.)"""
    from masthead.store import migrate
    from masthead.store.copy import copy_database

    with get_engine(laptop).begin() as conn:
        for key in ("a_b@example.org", "a-b@example.org", "a.b@example.org", "ab@example.org"):
            conn.execute(schema.suppressions.insert().values(email_key=key, reason="manual"))
    dispose_engines()
    engine = get_engine(server)
    migrate(engine)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql(
                'ALTER TABLE suppressions ALTER COLUMN email_key TYPE text COLLATE "en-x-icu"'
            )
            order = conn.exec_driver_sql(
                "SELECT k FROM (VALUES ('a-b'), ('a_b')) AS v(k) ORDER BY k COLLATE \"en-x-icu\""
            ).scalars()
            assert list(order) == ["a_b", "a-b"]  # not byte order: the collation differs
    report = copy_database(laptop, server)
    table = next(t for t in report.tables if t.name == "suppressions")
    assert table.source_rows == table.target_rows == 6
    assert report.ok, [(t.name, t.source_sum, t.target_sum) for t in report.tables if not t.ok]
