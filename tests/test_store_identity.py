"""The database knows what it is (issue 14, point 3): an emptied, deleted, replaced or
damaged SQLite file is refused with the way to restore it, never taken for a new, empty
list; a copy made before each send puts it back."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from conftest import sqlite_only
from masthead.store import dispose_engines
from sendkit import add_subscribers, built_template, open_pub, send_cli, wired_copy
from smtp_sink import SmtpSink

pytestmark = sqlite_only  # about the SQLite file; PostgreSQL keeps its own backups


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_template(tmp_path_factory.mktemp("identity") / "pub")


def sent_once(root: Path, sink: SmtpSink, n: int) -> None:
    """A publication with ``n`` readers that has mailed the issue to all of them."""
    _, store, _ = open_pub(root)
    add_subscribers(store, n)
    dispose_engines()
    done = send_cli(root)
    _, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert len(sink.messages) == n


def send_again(root: Path) -> tuple[int, str]:
    dispose_engines()
    again = send_cli(root)
    out, err = again.communicate(timeout=120)
    return again.returncode, out + err


def db_file(root: Path) -> Path:
    return root / ".masthead" / "masthead.db"


def drop_file(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


@pytest.mark.parametrize("how", ["truncated", "deleted"])
def test_emptied_database_is_refused_not_a_new_list(template: Path, tmp_path: Path, how: str):
    """Regression: after `truncate -s 0 .masthead/masthead.db`, send said "No active
    subscribers: nothing to send." and exited 0, and re-importing the list then mailed
    every reader a second copy."""
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        sent_once(root, sink, 20)
        if how == "truncated":
            for suffix in ("-wal", "-shm"):
                Path(str(db_file(root)) + suffix).unlink(missing_ok=True)
            os.truncate(db_file(root), 0)
        else:
            drop_file(db_file(root))
        code, output = send_again(root)
        assert code == 1
        assert "nothing to send" not in output
        assert "empty or missing" in output and "masthead db restore" in output
        assert "Traceback" not in output
        # the list cannot be imported into the emptied file either
        from click.testing import CliRunner

        from masthead.cli import main

        csv = tmp_path / "list.csv"
        csv.write_text("email\nreader1@example1.org\n", encoding="utf-8")
        result = CliRunner().invoke(main, ["subscribers", "import", str(root), str(csv)])
        assert result.exit_code == 1 and "masthead db restore" in result.output
        assert len(sink.messages) == 20  # nobody mailed twice


def test_restore_puts_back_the_copy_made_before_the_send(template: Path, tmp_path: Path):
    from click.testing import CliRunner

    from masthead.cli import main

    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        sent_once(root, sink, 15)
        copies = sorted((root / ".masthead" / "backups").glob("masthead-*.db"))
        assert len(copies) == 1 and oct(copies[0].stat().st_mode & 0o777) == "0o600"
        os.truncate(db_file(root), 0)
        runner = CliRunner()
        listed = runner.invoke(main, ["db", "restore", str(root), "--list"])
        assert listed.exit_code == 0 and copies[0].name in listed.output
        dispose_engines()
        done = runner.invoke(main, ["db", "restore", str(root), "--yes"])
        assert done.exit_code == 0, done.output
        assert "kept as" in done.output
        assert list((root / ".masthead").glob("masthead.db.replaced-*"))
        dispose_engines()
        status = runner.invoke(main, ["db", "status", str(root)])
        assert status.exit_code == 0, status.output
        assert "subscribers" in status.output and " 15" in status.output
        # the send the copy was made in goes on; nobody new, and the send is known
        code, output = send_again(root)
        assert code in (0, 1), output
        assert "Traceback" not in output


def test_a_replaced_database_is_refused(template: Path, tmp_path: Path) -> None:
    """Another publication's database file put in place of this one's."""
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        other = wired_copy(template, tmp_path / "other", sink.port)
        sent_once(root, sink, 5)
        open_pub(other)  # gives the other database its own identity
        dispose_engines()
        drop_file(db_file(root))
        os.replace(db_file(other), db_file(root))
        code, output = send_again(root)
        assert code == 1 and ("is not the one" in output or "has id" in output)
        assert "Traceback" not in output


def test_starting_a_new_list_on_purpose(template: Path, tmp_path: Path) -> None:
    """The documented way to start over: delete the marker the error names."""
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        sent_once(root, sink, 3)
        drop_file(db_file(root))
        (root / ".masthead" / "database.id").unlink()
        code, output = send_again(root)
        assert code == 0 and "No active subscribers" in output


@pytest.mark.parametrize("damage", ["header", "page"])
def test_damaged_database_is_a_message_and_nothing_is_sent(
    template: Path, tmp_path: Path, damage: str
) -> None:
    """Regression: a damaged file gave 120-line tracebacks, and a send delivered 516
    messages before failing with advice about "the database server"."""
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        add_subscribers(store, 3000)
        dispose_engines()
        path = db_file(root)
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = path.stat().st_size
        with open(path, "r+b") as f:
            if damage == "header":
                f.write(b"this is not a database at all" * 4)
            else:  # pages in the middle of the subscribers table: the header still reads
                f.seek(size // 2)
                f.write(os.urandom(4096 * 4))
        code, output = send_again(root)
        assert code == 1, output
        assert "Traceback" not in output
        assert "masthead db restore" in output
        assert "damaged" in output or "malformed" in output or "failed" in output
        assert len(sink.messages) == 0
