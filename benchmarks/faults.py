"""Fault injection: the faults an operator's machine meets, each reproduced for real, with
what was lost, doubled and in flight (issue 14).

    python benchmarks/faults.py                       # SQLite
    python benchmarks/faults.py --postgres postgresql://masthead:masthead@127.0.0.1/masthead_test
    python benchmarks/faults.py --only kill,hang      # some scenarios

Scenarios (each on a fresh copy of a small built publication, against aiosmtpd on 127.0.0.1):

- kill:    a sender SIGKILLed at random moments, then run to the end;
- hang:    the database stops answering for 3 s mid-send (another client holds its write
           lock); messages put on the wire meanwhile;
- gone:    (PostgreSQL) the database disappears mid-send (its schema renamed away), comes
           back, and the send is run again;
- cut:     (PostgreSQL) the sender's connections are terminated 6 times mid-send;
- emptied: the SQLite file truncated to 0 bytes after a send; the send and an import run
           again;
- edit:    the issue edited between two runs of one send;
- builds:  two `masthead build` processes of one publication at once, N times;
- publish: `masthead publish` of a damaged `_site/` (index.html deleted, manifest emptied);
- disk:    a build onto a full file system (a small tmpfs; needs root).

Prints one line per scenario: lost (readers never mailed), doubled (readers mailed twice),
the bound (messages that may be doubled: on the wire at each fault), and the outcome.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from masthead.store import dispose_engines  # noqa: E402
from sendkit import (  # noqa: E402
    SLUG,
    add_subscribers,
    built_template,
    open_pub,
    send_cli,
    wired_copy,
)
from smtp_sink import SmtpSink  # noqa: E402

CONCURRENCY = 3  # [smtp] concurrency of wired_copy: one message on the wire per connection


@dataclass
class Row:
    scenario: str
    database: str
    lost: int | str = "-"
    doubled: int | str = "-"
    bound: int | str = "-"
    outcome: str = ""


def wait_for(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the scenario did not reach its moment")
        time.sleep(0.005)


def tally(received: dict[str, int], addresses: list[str]) -> tuple[int, int]:
    lost = len(set(addresses) - set(received))
    doubled = sum(1 for n in received.values() if n > 1)
    return lost, doubled


class Lab:
    def __init__(self, workdir: Path, postgres: str | None) -> None:
        self.workdir = workdir
        self.postgres = postgres
        self.template = built_template(workdir / "template")
        self.n = 0

    def database(self) -> str:
        return "postgresql" if self.postgres else "sqlite"

    def fresh(self, sink: SmtpSink, extra_smtp: str = "") -> Path:
        """A wired copy; on PostgreSQL, with a schema of its own."""
        self.n += 1
        dispose_engines()
        if self.postgres:
            import psycopg

            schema = f"faults_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(self.plain(), autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            sep = "&" if "?" in self.postgres else "?"
            os.environ["MASTHEAD_DATABASE_URL"] = (
                f"{self.postgres}{sep}options=-csearch_path%3D{schema}"
            )
        return wired_copy(self.template, self.workdir / f"pub{self.n}", sink.port, extra_smtp)

    def plain(self) -> str:
        return (self.postgres or "").replace("postgresql+psycopg://", "postgresql://")

    def schema(self) -> str:
        return os.environ["MASTHEAD_DATABASE_URL"].rsplit("%3D", 1)[1]


def run_to_end(root: Path, *args: str) -> tuple[int, str]:
    dispose_engines()
    proc = send_cli(root, *args)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out + err


def scenario_kill(lab: Lab, kills: int = 5, readers: int = 5000) -> Row:
    rng = random.Random(7)
    with SmtpSink() as sink:
        root = lab.fresh(sink)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, readers)
        done = 0
        for _ in range(kills):
            proc = send_cli(root)
            target = len(sink.messages) + rng.randint(50, readers // (kills + 1))

            def reached(proc: subprocess.Popen[str] = proc, target: int = target) -> bool:
                return len(sink.messages) >= target or proc.poll() is not None

            try:
                wait_for(reached)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
            done += proc.returncode == -signal.SIGKILL
        code, _ = run_to_end(root)
        lost, doubled = tally(sink.by_recipient(), addresses)
    return Row(
        f"kill ×{done}",
        lab.database(),
        lost,
        doubled,
        CONCURRENCY * done,
        f"final run exit {code}",
    )


def scenario_hang(lab: Lab, readers: int = 3000) -> Row:
    with SmtpSink() as sink:
        root = lab.fresh(sink)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, readers)
        proc = send_cli(root)
        wait_for(lambda: len(sink.messages) >= 200)
        if lab.postgres:
            import psycopg

            blocker = psycopg.connect(lab.plain())
            blocker.execute(f"LOCK TABLE {lab.schema()}.outbox IN EXCLUSIVE MODE")
            release = blocker.rollback
        else:
            blocker = sqlite3.connect(store.url.removeprefix("sqlite:///"), isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")

            def release() -> None:
                blocker.execute("ROLLBACK")

        at = len(sink.messages)
        time.sleep(3)
        during = len(sink.messages) - at
        release()
        blocker.close()
        proc.communicate(timeout=300)
        lost, doubled = tally(sink.by_recipient(), addresses)
    return Row(
        "database hangs 3 s",
        lab.database(),
        lost,
        doubled,
        0,
        f"{during} sent while it hung (limit: the batch being written and one more, 500); "
        f"exit {proc.returncode}",
    )


def scenario_gone(lab: Lab, readers: int = 3000) -> Row | None:
    if not lab.postgres:
        return None
    import psycopg

    with SmtpSink() as sink:
        root = lab.fresh(sink)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, readers)
        proc = send_cli(root, "--lease", "20")
        wait_for(lambda: len(sink.messages) >= 300)
        schema = lab.schema()
        with psycopg.connect(lab.plain(), autocommit=True) as conn:
            conn.execute(f"ALTER SCHEMA {schema} RENAME TO {schema}_gone")
            try:
                proc.communicate(timeout=120)
            finally:
                conn.execute(f"ALTER SCHEMA {schema}_gone RENAME TO {schema}")
        code, out = run_to_end(root, "--lease", "20")
        lost, doubled = tally(sink.by_recipient(), addresses)
    replayed = "recorded from its journal" in out
    return Row(
        "database gone, back",
        lab.database(),
        lost,
        doubled,
        0,
        f"first run exit {proc.returncode}; rerun exit {code}; journal replayed: {replayed}",
    )


def scenario_cut(lab: Lab, readers: int = 3000) -> Row | None:
    if not lab.postgres:
        return None
    import psycopg

    with SmtpSink() as sink:
        root = lab.fresh(sink)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, readers)
        proc = send_cli(root)
        wait_for(lambda: len(sink.messages) >= 300)
        cuts = 0
        with psycopg.connect(lab.plain(), autocommit=True) as conn:
            for _ in range(6):
                cuts += conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                ).fetchone()[0]
                time.sleep(0.3)
        proc.communicate(timeout=300)
        lost, doubled = tally(sink.by_recipient(), addresses)
    return Row(
        f"connections cut ×{cuts}", lab.database(), lost, doubled, 0, f"exit {proc.returncode}"
    )


def scenario_emptied(lab: Lab, readers: int = 800) -> Row | None:
    if lab.postgres:
        return None
    with SmtpSink() as sink:
        root = lab.fresh(sink)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, readers)
        run_to_end(root)
        db = root / ".masthead" / "masthead.db"
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        os.truncate(db, 0)
        code, out = run_to_end(root)
        csv = lab.workdir / "list.csv"
        csv.write_text("email\n" + "\n".join(addresses) + "\n", "utf-8")
        imported = cli("subscribers", "import", str(root), str(csv))
        lost, doubled = tally(sink.by_recipient(), addresses)
    refused = code == 1 and "masthead db restore" in out and imported.returncode != 0
    return Row(
        "database file emptied",
        lab.database(),
        lost,
        doubled,
        0,
        f"send and import refused with the way back: {refused}",
    )


def scenario_edit(lab: Lab, readers: int = 200) -> Row:
    with SmtpSink() as sink:
        root = lab.fresh(sink, extra_smtp="rate_per_minute = 3000\n")
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, readers)
        proc = send_cli(root)
        wait_for(lambda: len(sink.messages) >= 20)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        item = root / "issues" / SLUG / "notes.md"
        item.write_text(item.read_text("utf-8").replace("The river is high", "EDITED"), "utf-8")
        code, _ = run_to_end(root)
        edited = sum(
            "EDITED" in m.parsed().get_body(("plain",)).get_content() for m in sink.messages
        )
        lost, doubled = tally(sink.by_recipient(), addresses)
    return Row(
        "issue edited mid-send",
        lab.database(),
        lost,
        doubled,
        0,
        f"{edited} readers got the edited text; exit {code}",
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from masthead.cli import main; main()", *args],
        capture_output=True,
        text=True,
    )


def site_whole(root: Path) -> bool:
    import json

    site = root / "_site"
    try:
        manifest = json.loads((site / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    named = [
        v
        for issue in manifest.get("issues", [])
        for k, v in issue.items()
        if k in ("pdf", "email") and isinstance(v, str)
    ]
    return (site / "index.html").exists() and all((site / p).exists() for p in named)


def scenario_builds(lab: Lab, times: int = 5) -> Row:
    from masthead.scaffold import copy_demo

    root = copy_demo(lab.workdir / "builds" / "demo")
    broken = both_ok_broken = 0
    for _ in range(times):
        a = subprocess.Popen(
            [sys.executable, "-c", "from masthead.cli import main; main()", "build", str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(random.random() * 0.2)
        b = cli("build", str(root), "--force")
        a.communicate()
        if not site_whole(root):
            broken += 1
            both_ok_broken += a.returncode == 0 and b.returncode == 0
    return Row(
        f"two builds at once ×{times}",
        "-",
        outcome=f"{broken} sites broken ({both_ok_broken} with both builds exiting 0)",
    )


def scenario_publish(lab: Lab) -> Row:
    from masthead.scaffold import copy_demo

    root = copy_demo(lab.workdir / "publish" / "demo")
    target = lab.workdir / "publish" / "www"
    assert cli("build", str(root)).returncode == 0
    assert cli("publish", str(root), "--to", str(target)).returncode == 0
    live = (target / "current").resolve()
    went_live = 0
    damages = {
        "index.html deleted": lambda: (root / "_site" / "index.html").unlink(),
        "manifest emptied": lambda: (root / "_site" / "manifest.json").write_text(""),
    }
    for damage in damages.values():
        cli("build", str(root), "--force")
        damage()
        cli("publish", str(root), "--to", str(target))
        went_live += (target / "current").resolve() != live
        live = (target / "current").resolve()
    return Row("publish a damaged _site/", "-", outcome=f"{went_live} of {len(damages)} went live")


def scenario_disk(lab: Lab) -> Row | None:
    from masthead.scaffold import copy_demo

    mount = lab.workdir / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)]).returncode:
        return Row("disk full during a build", "-", outcome="skipped: cannot mount a tmpfs")
    try:
        root = copy_demo(mount / "demo")
        assert cli("build", str(root)).returncode == 0
        before = sorted(p.name for p in (root / "_site").iterdir())
        free = shutil.disk_usage(mount).free
        (mount / "filler").write_bytes(b"\0" * max(free - 300_000, 0))
        result = cli("build", str(root), "--force")
        after = sorted(p.name for p in (root / "_site").iterdir())
        traceback = "Traceback" in result.stderr
        return Row(
            "disk full during a build",
            "-",
            outcome=f"exit {result.returncode}, traceback: {traceback}, "
            f"old site intact: {before == after and site_whole(root)}",
        )
    finally:
        subprocess.run(["umount", str(mount)])


SCENARIOS: dict[str, Callable[[Lab], Row | None]] = {
    "kill": scenario_kill,
    "hang": scenario_hang,
    "gone": scenario_gone,
    "cut": scenario_cut,
    "emptied": scenario_emptied,
    "edit": scenario_edit,
    "builds": scenario_builds,
    "publish": scenario_publish,
    "disk": scenario_disk,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", help="a PostgreSQL URL to run the send scenarios on")
    parser.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(SCENARIOS)
    print(f"{'scenario':<28} {'database':<11} {'lost':>5} {'doubled':>8} {'bound':>6}  outcome")
    with tempfile.TemporaryDirectory(prefix="masthead-faults-") as tmp:
        lab = Lab(Path(tmp), args.postgres)
        for name in names:
            row = SCENARIOS[name](lab)
            if row is None:
                continue
            print(
                f"{row.scenario:<28} {row.database:<11} {row.lost!s:>5} {row.doubled!s:>8} "
                f"{row.bound!s:>6}  {row.outcome}",
                flush=True,
            )


if __name__ == "__main__":
    main()
