"""Review of issue 14's fault handling: failing tests for faults that still lose, double or
strand a send (each docstring names the break)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import sqlite_only
from sendkit import add_subscribers, built_template, open_pub, send_cli, wired_copy
from smtp_sink import SmtpSink


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_template(tmp_path_factory.mktemp("review_faults") / "pub")


def masthead(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from masthead.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def wait_for(sink: SmtpSink, n: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while len(sink.messages) < n:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.002)


@sqlite_only  # about the SQLite file and its copies
def test_restoring_the_copy_made_before_a_finished_send_mails_everyone_again(
    template: Path, tmp_path: Path
) -> None:
    """db restore of the pre-send copy after the send finished: the next send re-mails all."""
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, 50)
        first = send_cli(root)
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, out + err
        store.engine.dispose()
        # the file is damaged later; the documented way back is the copy made before the send
        restored = masthead("db", "restore", str(root), "--yes")
        assert restored.returncode == 0, restored.stdout + restored.stderr
        again = send_cli(root)
        out, err = again.communicate(timeout=120)
        received = sink.by_recipient()
    assert set(received) == set(addresses)
    twice = [a for a, n in received.items() if n > 1]
    assert len(twice) <= 3, f"{len(twice)} readers got the issue twice"


def test_a_journal_of_a_sender_killed_before_a_reboot_is_never_replayed(
    template: Path, tmp_path: Path
) -> None:
    """A SIGKILLed sender's journal is ignored after a reboot/container restart: doubles."""
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, 2000)
        # this_machine() is host/boot-id/pid-namespace: a reboot or a restarted container
        # changes the last two, the publication folder (and its journal) stays
        first = send_cli(root, "--lease", "2", env={"MASTHEAD_MACHINE": "box/boot1/4026531836"})
        wait_for(sink, 1000, first)
        first.send_signal(signal.SIGKILL)
        first.communicate()
        journal = list((root / ".masthead" / "journal").glob("*.log"))
        assert len(journal) == 1
        time.sleep(2.5)  # the lease has run out
        again = send_cli(root, env={"MASTHEAD_MACHINE": "box/boot2/4026531999"})
        out, err = again.communicate(timeout=120)
        received = sink.by_recipient()
    assert again.returncode == 0, out + err
    assert set(received) == set(addresses)
    twice = [a for a, n in received.items() if n > 1]
    assert len(twice) <= 3, f"{len(twice)} readers got the issue twice"


@sqlite_only  # about the SQLite file and its copies
def test_an_unreadable_database_marker_lets_an_emptied_database_pass_as_a_new_list(
    template: Path, tmp_path: Path
) -> None:
    """database.id damaged (not deleted) + database emptied: taken for a new list, no refusal."""
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        add_subscribers(store, 10)
        first = send_cli(root)
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, out + err
        store.engine.dispose()
        db = Path(store.url.removeprefix("sqlite:///"))
        marker = root / ".masthead" / "database.id"
        assert json.loads(marker.read_text("utf-8"))
        marker.write_bytes(b"\x00" * 64)  # a torn write, a crash of the disk's cache
        db.write_bytes(b"")  # truncate -s 0
        again = masthead("subscribers", "list", str(root))
    assert again.returncode != 0 and "restore" in again.stdout + again.stderr, (
        again.stdout + again.stderr
    )


@sqlite_only  # about the SQLite file and its copies
def test_two_restores_in_one_second_keep_the_file_replaced_first(
    template: Path, tmp_path: Path
) -> None:
    """db restore twice within a second overwrites the kept 'replaced' file (data lost)."""
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        add_subscribers(store, 10)
        first = send_cli(root)
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, out + err
        store.engine.dispose()
    db = Path(store.url.removeprefix("sqlite:///"))
    original = db.read_bytes()
    from masthead.content import load_publication
    from masthead.store import database_url
    from masthead.store.backup import restore

    pub = load_publication(root)
    for _ in range(2):  # e.g. the wrong copy first, then another, from a script
        restore(pub, database_url(pub))
    kept = [p.read_bytes() for p in db.parent.glob(db.name + ".replaced-*") if p.is_file()]
    assert original in kept, f"{len(kept)} kept files, none is the original database"


@pytest.mark.parametrize(
    "damage",
    ["[]", '{"issues": null}', '{"issues": [1]}', "directory"],
    ids=["a-list", "issues-null", "issue-not-an-object", "a-directory"],
)
def test_send_on_a_damaged_site_manifest_is_a_message_not_a_traceback(
    template: Path, tmp_path: Path, damage: str
) -> None:
    """masthead send with a damaged _site/manifest.json: AttributeError/TypeError traceback."""
    root = wired_copy(template, tmp_path / "pub", 1)
    manifest = root / "_site" / "manifest.json"
    manifest.unlink()
    if damage == "directory":
        manifest.mkdir()
    else:
        manifest.write_text(damage, "utf-8")
    result = masthead("send", str(root), "--issue", "2020-03", "--yes", "-q")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-300:]
    assert "Error:" in result.stderr


def test_a_send_that_has_begun_goes_on_from_its_snapshot_when_the_issue_folder_is_gone(
    template: Path, tmp_path: Path
) -> None:
    """A begun send cannot resume once issues/<slug>/ is moved away: rows stranded, though the
    email is stored in send_editions."""
    with SmtpSink() as sink:
        root = wired_copy(
            template, tmp_path / "pub", sink.port, extra_smtp="rate_per_minute = 600\n"
        )
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, 40)
        first = send_cli(root)
        wait_for(sink, 5, first)
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
        # the editor archives the folder (or renames it) once the send has started
        (root / "issues" / "2020-03").rename(tmp_path / "archived-2020-03")
        again = send_cli(root)
        out, err = again.communicate(timeout=120)
        received = sink.by_recipient()
    assert again.returncode == 0, out + err
    assert set(received) == set(addresses)


def test_a_resumed_send_does_not_need_the_pdf_its_snapshot_already_holds(
    template: Path, tmp_path: Path
) -> None:
    """attach_pdf and the PDF gone from _site/ after the send began: FileNotFoundError."""
    with SmtpSink() as sink:
        root = wired_copy(
            template, tmp_path / "pub", sink.port, extra_smtp="rate_per_minute = 600\n"
        )
        toml = root / "masthead.toml"
        toml.write_text(
            toml.read_text("utf-8").replace("[email]\n", "[email]\nattach_pdf = true\n", 1),
            "utf-8",
        )
        _, store, _ = open_pub(root)
        add_subscribers(store, 40)
        first = send_cli(root)
        wait_for(sink, 5, first)
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
        for pdf in (root / "_site").rglob("*.pdf"):
            pdf.unlink()  # a damaged or half-published _site/
        again = send_cli(root)
        out, err = again.communicate(timeout=120)
    assert "Traceback" not in err, err[-400:]
    assert again.returncode == 0, out + err


def test_db_restore_while_a_send_runs_is_refused(template: Path, tmp_path: Path) -> None:
    """db restore during a send: the sender records into the file moved aside; readers doubled."""
    with SmtpSink() as sink:
        root = wired_copy(
            template, tmp_path / "pub", sink.port, extra_smtp="rate_per_minute = 3000\n"
        )
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, 200)
        store.engine.dispose()
        first = send_cli(root)
        wait_for(sink, 60, first)
        restored = masthead("db", "restore", str(root), "--yes")
        first.communicate(timeout=120)
        again = send_cli(root)
        again.communicate(timeout=120)
        received = sink.by_recipient()
    refused = restored.returncode != 0
    twice = [a for a, n in received.items() if n > 1]
    assert set(received) == set(addresses)
    assert refused or len(twice) <= 3, (
        f"restore ran beside the send; {len(twice)} readers got the issue twice"
    )


@pytest.mark.parametrize(
    "line",
    [
        "1\t1\t0\tbogus\t250\t\treader0@example0.org\tx",
        f"{2**70}\t1\t0\tsent\t250\t\treader0@example0.org\tx",
        f"1\t1\t{2**70}\tretry\t451\t\treader0@example0.org\tx",
        f"1\t1\t0\tfailed\t{2**70}\t\treader0@example0.org\tx",
    ],
    ids=["unknown-state", "huge-row-id", "huge-attempts", "huge-code"],
)
def test_a_garbage_line_in_a_dead_senders_journal_neither_strands_nor_crashes_the_send(
    template: Path, tmp_path: Path, line: str
) -> None:
    """A garbage journal line: a row left in state 'bogus', or an OverflowError on every run."""
    from masthead.deliver.outbox import this_machine

    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, 5)
        journal = root / ".masthead" / "journal"
        journal.mkdir(parents=True)
        (journal / "2020-03.99999.abcd.log").write_text(
            f"{this_machine()}:99999:abcd\t2020-03\n{line}\n", "utf-8"
        )
        runs = [send_cli(root).communicate(timeout=120) for _ in range(2)]
        received = sink.by_recipient()
    for _out, err in runs:
        assert "Traceback" not in err, err[-300:]
    assert set(received) == set(addresses), runs[-1]


def test_a_journal_copied_from_another_publication_marks_nobody_sent(
    template: Path, tmp_path: Path
) -> None:
    """A dead sender's journal of another publication (same slug) marks this one's rows sent."""
    from masthead.deliver.outbox import this_machine

    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, 20)
        journal = root / ".masthead" / "journal"
        journal.mkdir(parents=True)
        # the sister publication's journal: its rows 1..20 went to its own readers
        lines = [f"{i}\t{i}\t0\tsent\t250\t\tsomeone{i}@elsewhere.example\t" for i in range(1, 21)]
        (journal / "2020-03.99999.abcd.log").write_text(
            f"{this_machine()}:99999:abcd\t2020-03\n" + "\n".join(lines) + "\n", "utf-8"
        )
        out, _ = send_cli(root).communicate(timeout=120)
        received = sink.by_recipient()
    assert set(received) == set(addresses), f"{len(received)} of 20 mailed: {out}"


@sqlite_only  # about the SQLite file and its copies
def test_an_emptied_database_is_refused_after_the_publication_folder_was_moved(
    template: Path, tmp_path: Path
) -> None:
    """database.id is keyed by the absolute SQLite path: after mv of the folder, a lost file
    is taken for a new list."""
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        add_subscribers(store, 10)
        out, err = send_cli(root).communicate(timeout=120)
        store.engine.dispose()
    moved = root.rename(tmp_path / "bulletin")  # a reorganised disk, a new mount point
    db = moved / ".masthead" / "masthead.db"
    assert db.is_file(), out + err
    db.write_bytes(b"")  # truncate -s 0
    result = masthead("subscribers", "list", str(moved))
    assert result.returncode != 0 and "restore" in result.stderr, result.stdout + result.stderr


@sqlite_only  # about the SQLite file and its copies
def test_pages_damaged_mid_send_then_the_documented_restore_doubles_the_whole_send(
    template: Path, tmp_path: Path
) -> None:
    """Damage mid-send goes unnoticed (exit 0); db restore + send again mails everyone twice."""
    with SmtpSink() as sink:
        root = wired_copy(
            template, tmp_path / "pub", sink.port, extra_smtp="rate_per_minute = 30000\n"
        )
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, 1000)
        store.engine.dispose()
        first = send_cli(root)
        wait_for(sink, 200, first)
        db = root / ".masthead" / "masthead.db"
        with open(db, "r+b") as f:  # bad sectors under the running send
            for offset in range(8192, db.stat().st_size, 3 * 4096):
                f.seek(offset)
                f.write(b"\xa5" * 4096)
        first.communicate(timeout=120)
        damaged = masthead("subscribers", "list", str(root))
        assert "db restore" in damaged.stderr, damaged.stdout + damaged.stderr
        assert masthead("db", "restore", str(root), "--yes").returncode == 0
        again = send_cli(root)
        again.communicate(timeout=120)
        received = sink.by_recipient()
    assert set(received) == set(addresses)
    twice = [a for a, n in received.items() if n > 1]
    assert len(twice) <= 3, f"{len(twice)} of {len(addresses)} readers got the issue twice"


PG_BASE = "postgresql://masthead:masthead@127.0.0.1:5432/masthead_test"


def test_a_dropped_postgresql_database_is_not_sent_to_masthead_db_restore(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL dropped and re-created: refused, but the fix names `masthead db restore`,
    which refuses PostgreSQL: no documented command leads back."""
    psycopg = pytest.importorskip("psycopg")
    schema = f"review14_{int(time.time() * 1000) % 10**9}"
    try:
        admin = psycopg.connect(PG_BASE, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL on 127.0.0.1")
    admin.execute(f"CREATE SCHEMA {schema}")
    monkeypatch.setenv("MASTHEAD_DATABASE_URL", f"{PG_BASE}?options=-csearch_path%3D{schema}")
    try:
        root = wired_copy(template, tmp_path / "pub", 1)
        _, store, _ = open_pub(root)
        add_subscribers(store, 3)
        store.engine.dispose()
        admin.execute(f"DROP SCHEMA {schema} CASCADE")  # dropped and re-created
        admin.execute(f"CREATE SCHEMA {schema}")
        refused = masthead("subscribers", "list", str(root))
        assert refused.returncode == 1
        assert "restore" in refused.stderr
        follow = masthead("db", "restore", str(root), "--yes")
    finally:
        from masthead.store import dispose_engines

        dispose_engines()
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()
    assert "masthead db restore" not in refused.stderr or follow.returncode == 0, (
        refused.stderr + follow.stderr
    )


def test_a_sender_killed_beside_a_running_one_is_taken_over_with_its_journal(
    template: Path, tmp_path: Path
) -> None:
    """Two sends at once, one SIGKILLed: the survivor takes its rows over without replaying
    its journal, re-mailing every answer the dead one had not yet recorded."""
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, 3000)
        victim, survivor = send_cli(root), send_cli(root)
        wait_for(sink, 1500, victim)
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
        out, err = survivor.communicate(timeout=180)
        received = sink.by_recipient()
    assert survivor.returncode == 0, out + err
    assert set(received) == set(addresses)
    twice = [a for a, n in received.items() if n > 1]
    assert len(twice) <= 3, f"{len(twice)} readers got the issue twice"


class FreezingProxy:
    """A TCP proxy on 127.0.0.1 that can stop forwarding without closing anything: a
    database server that hangs (a network partition), not one that fails."""

    def __init__(self, upstream_port: int) -> None:
        import socket
        import threading

        self.upstream = upstream_port
        self.frozen = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst) -> None:  # type: ignore[no-untyped-def]
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            while self.frozen.is_set():
                time.sleep(0.05)
            if not data:
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.frozen.clear()
        self.server.close()
        for s in self.sockets:
            s.close()


@pytest.mark.xfail(
    strict=False,  # how many are doubled depends on timing; it is rarely within the bound
    reason="open (issue 14): a worker on another machine that takes over after a network "
    "partition re-mails the answers the partitioned worker journaled but could not record "
    "(up to two batches); it needs the answers shared beyond one machine's journal",
)
def test_a_worker_whose_database_hangs_is_not_doubled_by_the_one_taking_over(
    template: Path, tmp_path: Path
) -> None:
    """PostgreSQL hangs (no answer, no error) under worker A: A waits forever (no timeout);
    worker B either waits forever behind A's row locks, or after the lease re-mails the answers
    A holds unrecorded, and A mails its stale queue when its database comes back."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_BASE, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL on 127.0.0.1")
    schema = f"review14_{int(time.time() * 1000) % 10**9}"
    admin.execute(f"CREATE SCHEMA {schema}")
    proxy = FreezingProxy(5432)
    direct = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    proxied = direct.replace(":5432/", f":{proxy.port}/")
    a = b = None
    try:
        with SmtpSink() as sink:
            import os

            os.environ["MASTHEAD_DATABASE_URL"] = direct
            root = wired_copy(template, tmp_path / "pub", sink.port)
            _, store, _ = open_pub(root)
            addresses = add_subscribers(store, 2000)
            store.engine.dispose()
            env_a = {"MASTHEAD_DATABASE_URL": proxied, "MASTHEAD_MACHINE": "host-a"}
            a = send_cli(root, "--worker", "--lease", "4", env=env_a)
            wait_for(sink, 600, a)
            proxy.frozen.set()  # A's database stops answering
            env_b = {"MASTHEAD_DATABASE_URL": direct, "MASTHEAD_MACHINE": "host-b"}
            b = send_cli(root, "--worker", "--lease", "4", env=env_b)
            try:
                b.communicate(timeout=60)
                b_done = True
            except subprocess.TimeoutExpired:  # blocked behind A's hung transaction's locks
                b_done = False
                b.kill()
                b.communicate()
            a_still_waiting = a.poll() is None
            before = sum(1 for n in sink.by_recipient().values() if n > 1)
            proxy.frozen.clear()
            a.communicate(timeout=60)
            received = sink.by_recipient()
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
        proxy.close()
        from masthead.store import dispose_engines

        dispose_engines()
        admin.execute("SET lock_timeout = '20s'")  # A's backend may outlive its socket a while
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()
        os.environ.pop("MASTHEAD_DATABASE_URL", None)
    assert b_done, "worker B waited 60 s, stuck behind the row locks of A's hung transaction"
    assert set(received) == set(addresses)
    twice = [x for x, n in received.items() if n > 1]
    assert len(twice) <= 3, (
        f"{len(twice)} readers got the issue twice, {before} before A's database came back "
        f"(A still waiting then: {a_still_waiting})"
    )
