"""The database: created on first use under .masthead/, versioned migrations that keep data."""

from __future__ import annotations

import sqlite3
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import StatementError

from conftest import sqlite_only
from masthead.content import load_publication
from masthead.errors import StoreError
from masthead.store import (
    LATEST,
    dispose_engines,
    get_engine,
    migrate,
    open_store,
    outbox,
    schema,
    subscribers,
)
from masthead.store import subscriber_list as subs


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    dispose_engines()


@sqlite_only
def test_the_sqlite_database_is_created_in_the_state_folder(demo: Path) -> None:
    open_store(load_publication(demo))
    db = demo / ".masthead" / "masthead.db"
    assert db.exists()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600  # personal data: owner only
    assert not (demo / "_site").exists() or not list((demo / "_site").rglob("*.db"))
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_database_has_every_table_at_the_latest_version(demo: Path) -> None:
    store = open_store(load_publication(demo))
    names = set(inspect(store.engine).get_table_names())
    assert {
        "schema_version",
        "subscribers",
        "consent_events",
        "suppressions",
        "outbox",
        "sends",
        "bounce_events",
        "rate_limits",
        "settings",
        "send_editions",
    } <= names
    assert store.version() == LATEST == 4
    uniques = inspect(store.engine).get_unique_constraints("outbox")
    assert any(u["column_names"] == ["issue_slug", "subscriber_id"] for u in uniques)


def test_migrate_again_keeps_every_subscriber_unchanged(demo: Path) -> None:
    pub = load_publication(demo)
    store = open_store(pub)
    for i in range(20):
        subs.add(store, f"reader{i}@example.org", name=f"Reader {i}", confirmed=True)
    subs.suppress(store, "reader3@example.org", "complaint")
    with store.read() as conn:
        before = [tuple(r) for r in conn.execute(select(subscribers).order_by(subscribers.c.id))]
    assert migrate(store.engine) == LATEST
    dispose_engines()
    store = open_store(pub)
    with store.read() as conn:
        after = [tuple(r) for r in conn.execute(select(subscribers).order_by(subscribers.c.id))]
        versions = conn.execute(select(schema.schema_version.c.version)).scalars().all()
    assert after == before
    assert versions == [LATEST]


def test_a_version_1_database_is_upgraded_keeping_its_subscribers(demo: Path) -> None:
    """The first published schema, then `masthead db upgrade`: the new table appears and not
    a row is lost."""
    import subprocess
    import sys

    from masthead.store import database_url, rate_limits, settings

    pub = load_publication(demo)
    engine = get_engine(database_url(pub))
    with engine.begin() as conn:
        for table in schema.metadata.sorted_tables:
            if table not in (rate_limits, settings):  # versions 2 and 3
                table.create(conn)
        conn.execute(schema.schema_version.insert().values(version=1))
        conn.execute(
            subscribers.insert(),
            [{"email": f"r{i}@example.org", "email_key": f"r{i}@example.org"} for i in range(50)],
        )
    dispose_engines()
    done = subprocess.run(
        [sys.executable, "-m", "masthead", "db", "upgrade", str(demo)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"upgraded from version 1 to {LATEST}" in done.stdout
    store = open_store(pub, upgrade=False)
    assert store.version() == LATEST
    assert {"rate_limits", "settings"} <= set(inspect(store.engine).get_table_names())
    with store.read() as conn:
        assert len(conn.execute(select(subscribers.c.id)).all()) == 50


def test_a_newer_database_is_refused_with_a_fix(demo: Path) -> None:
    store = open_store(load_publication(demo))
    with store.begin() as conn:
        conn.execute(schema.schema_version.insert().values(version=LATEST + 1))
    with pytest.raises(StoreError, match="newer than this Masthead") as info:
        open_store(load_publication(demo))
    assert "upgrade Masthead" in str(info.value)


def test_timestamps_are_aware_utc_and_naive_ones_are_refused(demo: Path) -> None:
    store = open_store(load_publication(demo))
    plus2 = timezone(timedelta(hours=2))
    when = datetime(2026, 1, 2, 12, 0, tzinfo=plus2)
    with store.begin() as conn:
        conn.execute(
            outbox.insert().values(
                issue_slug="2020-03", subscriber_id=1, email="a@example.org", next_attempt_at=when
            )
        )
        got = conn.execute(select(outbox.c.next_attempt_at, outbox.c.created_at)).one()
    assert got.next_attempt_at == when
    assert got.next_attempt_at.tzinfo == UTC
    assert got.created_at.tzinfo == UTC
    with pytest.raises(StatementError, match="timezone-aware"), store.begin() as conn:
        conn.execute(
            outbox.insert().values(
                issue_slug="x",
                subscriber_id=2,
                email="b@example.org",
                next_attempt_at=datetime(2026, 1, 1),
            )
        )


def test_database_url_from_the_environment_wins(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "elsewhere" / "list.db"
    monkeypatch.setenv("MASTHEAD_DATABASE_URL", f"sqlite:///{other}")
    store = open_store(load_publication(demo))
    subs.add(store, "a@example.org", confirmed=True)
    assert other.exists()
    assert not (demo / ".masthead" / "masthead.db").exists()


def test_a_bad_database_url_names_the_key(demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASTHEAD_DATABASE_URL", raising=False)
    toml = demo / "masthead.toml"
    toml.write_text('database_url = "not a url"\n' + toml.read_text("utf-8"), "utf-8")
    with pytest.raises(StoreError, match="database_url is not a database URL"):
        open_store(load_publication(demo))


def test_two_engines_on_one_file_wait_for_the_write_lock(demo: Path) -> None:
    """BEGIN IMMEDIATE: a second writer queues (busy timeout) instead of failing."""
    import threading

    store = open_store(load_publication(demo))
    url = store.url
    errors: list[BaseException] = []

    def add_many(prefix: str) -> None:
        try:
            engine = get_engine(url)
            for i in range(30):
                with engine.begin() as conn:
                    n = conn.execute(select(subscribers.c.id)).all()
                    conn.execute(
                        subscribers.insert().values(
                            email=f"{prefix}{i}@example.org",
                            email_key=f"{prefix}{i}@example.org",
                            status="active",
                            name=str(len(n)),
                        )
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add_many, args=(p,)) for p in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with store.read() as conn:
        assert len(conn.execute(select(subscribers.c.id)).all()) == 90


def test_concurrent_first_opens_create_the_schema_once(demo: Path) -> None:
    import subprocess
    import sys

    code = "from masthead.cli import main; main()"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, "db", "upgrade", str(demo)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    assert sum(f"upgraded from version 0 to {LATEST}" in o for o in outputs) >= 1
    store = open_store(load_publication(demo))
    with store.read() as conn:
        versions = conn.execute(select(schema.schema_version.c.version)).scalars().all()
    assert versions == [LATEST]
