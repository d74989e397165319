"""Benchmark for several machines (issue 8): a million subscribers in PostgreSQL, and send
workers sharing one outbox.

    python benchmarks/bench_scale.py                       # 1,000,000 subscribers; sends of 100,000
    python benchmarks/bench_scale.py --subscribers 200000 --send 20000,100000

1. Import a CSV of N subscribers into a new PostgreSQL database (`masthead subscribers
   import --confirmed`, in-process): rows per second (target >= 20,000).
2. Create the outbox of one issue for all N (`create_send`): seconds (target <= 60).
   Then `masthead db copy` of a SQLite list (default 100,000) to PostgreSQL, verified.
3. Send the demo issue into Postfix's smtp-sink: 1 sender on SQLite, then 2 `--worker`
   processes on PostgreSQL (target: 2 workers at least as fast as 1 on SQLite), with each
   process's peak RSS at two list sizes (target: flat). The two alternate, --repeat times
   (default 3), and the median ratio is the figure: on a shared machine one run of either
   can be 20% off. --diagnose adds 1 worker on PostgreSQL and 2 workers on SQLite.

Needs PostgreSQL on 127.0.0.1 (`bash .ci/postgres` starts Debian's, with the role used
here) and `/usr/sbin/smtp-sink` (Debian package postfix; not installed by CI).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_send import REPORT_HWM, SMTP_SINK, free_port, make_publication, start_sink

SERVER = "postgresql://masthead:masthead@127.0.0.1:5432/masthead_test"
SECRET = "benchmark-secret-0123456789"


def new_database(server: str) -> tuple[str, str]:
    """A fresh database on ``server``: (its URL, its name)."""
    import psycopg

    name = f"masthead_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + "/" + name, name


def drop_database(server: str, name: str) -> None:
    import psycopg

    from masthead.store import dispose_engines

    dispose_engines()
    for attempt in range(50):  # an autovacuum worker may still be in it for a moment
        try:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name}")
            return
        except psycopg.errors.ObjectInUse:
            time.sleep(0.2 * (attempt + 1))


def import_and_outbox(server: str, n: int) -> None:
    from masthead.content import load_publication
    from masthead.deliver import create_send
    from masthead.scaffold import copy_demo
    from masthead.store import open_store
    from masthead.store import subscriber_list as subs

    url, name = new_database(server)
    folder = Path(tempfile.mkdtemp(prefix="masthead-scale-"))
    os.environ["MASTHEAD_DATABASE_URL"] = url
    try:
        root = copy_demo(folder / "pub")
        pub = load_publication(root)
        store = open_store(pub)
        csv_path = folder / "list.csv"
        with open(csv_path, "w", encoding="utf-8") as f:
            f.write("email,name,language\n")
            for i in range(n):
                lang = "fa" if i % 5 == 0 else "en"
                f.write(f"reader{i}@example{i % 997}.org,Reader Number {i},{lang}\n")
        size = csv_path.stat().st_size / 2**20
        t = time.perf_counter()
        report = subs.import_csv(store, csv_path, confirmed=True)
        took = time.perf_counter() - t
        assert report.imported == n and not report.bad, report.bad[:3]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"  import {n:,} rows ({size:.0f} MiB CSV) into PostgreSQL: {took:.1f} s = "
            f"{n / took:,.0f} rows/s (target >= 20,000: {n / took / 20_000:.2f}x); "
            f"peak RSS {rss:.0f} MiB"
        )
        t = time.perf_counter()
        created, total = create_send(store, "2020-03")
        took = time.perf_counter() - t
        assert created and total == n
        print(
            f"  outbox of one issue for {total:,} subscribers: {took:.1f} s "
            f"(target <= 60 s: {took / 60:.2f}x)"
        )
        from masthead.deliver.outbox import claim, sender_id

        me = sender_id()
        times = []
        for _ in range(20):
            t = time.perf_counter()
            rows = claim(store, "2020-03", me, 250, 60)
            times.append(time.perf_counter() - t)
            assert rows is not None and len(rows) == 250
        times.sort()
        print(
            f"  claim 250 rows of that outbox: median {times[10] * 1000:.1f} ms, "
            f"worst {times[-1] * 1000:.1f} ms"
        )
    finally:
        os.environ.pop("MASTHEAD_DATABASE_URL", None)
        drop_database(server, name)
        shutil.rmtree(folder, ignore_errors=True)


def copy_to_postgresql(server: str, n: int) -> None:
    """`masthead db copy` of a SQLite list of ``n`` (subscribers and their consent records,
    a send's outbox) into a new PostgreSQL database: seconds and rows per second."""
    from masthead.content import load_publication
    from masthead.deliver import create_send
    from masthead.scaffold import copy_demo
    from masthead.store import dispose_engines, open_store
    from masthead.store import subscriber_list as subs
    from masthead.store.copy import copy_database

    folder = Path(tempfile.mkdtemp(prefix="masthead-copy-"))
    source = f"sqlite:///{folder / 'laptop.db'}"
    os.environ["MASTHEAD_DATABASE_URL"] = source
    url, name = new_database(server)
    try:
        root = copy_demo(folder / "pub")
        store = open_store(load_publication(root))
        csv_path = folder / "list.csv"
        with open(csv_path, "w", encoding="utf-8") as f:
            f.write("email,name\n")
            for i in range(n):
                f.write(f"reader{i}@example{i % 997}.org,Reader Number {i}\n")
        subs.import_csv(store, csv_path, confirmed=True)
        create_send(store, "2020-03")
        dispose_engines()
        t = time.perf_counter()
        report = copy_database(source, url)
        took = time.perf_counter() - t
        assert report.ok
        print(
            f"  db copy of a SQLite list of {n:,} ({report.rows:,} rows in all) to PostgreSQL, "
            f"verified: {took:.1f} s = {report.rows / took:,.0f} rows/s"
        )
    finally:
        os.environ.pop("MASTHEAD_DATABASE_URL", None)
        drop_database(server, name)
        shutil.rmtree(folder, ignore_errors=True)


def run_senders(
    root: Path, workers: int, env: dict[str, str], worker: bool
) -> tuple[int, float, list[float], float]:
    """(messages, seconds, peak RSS MiB of each process, CPU seconds of all) of ``workers``
    send processes started together (``worker``: as ``--worker``); the seconds run from the
    first start to the last exit."""
    cmd = [sys.executable, "-c", REPORT_HWM, "send", str(root), "--issue", "2020-03", "-q"]
    cmd += ["--worker"] if worker else ["--yes"]
    logs = [tempfile.TemporaryFile() for _ in range(workers)]  # noqa: SIM115
    started = time.perf_counter()
    pids = [
        os.posix_spawn(
            sys.executable,
            cmd,
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, log.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, log.fileno(), 2),
            ],
        )
        for log in logs
    ]
    rss: list[float] = []
    sent = 0
    cpu = 0.0
    for pid, log in zip(pids, logs, strict=True):
        _, status, usage = os.wait4(pid, 0)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
        match = re.search(r"this run sent ([\d,]+) in", text)
        if os.waitstatus_to_exitcode(status) != 0 or not match:
            raise RuntimeError(f"send failed:\n{text[-3000:]}")
        sent += int(match.group(1).replace(",", ""))
        hwm = re.search(r"VmHWM (\d+)", text)
        rss.append(int(hwm.group(1)) / 1024 if hwm else float("nan"))
        cpu += usage.ru_utime + usage.ru_stime
    return sent, time.perf_counter() - started, rss, cpu


def machine_cpu() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


COMPARED = [("1 sender, SQLite", 1, "sqlite"), ("2 workers, PostgreSQL", 2, "postgresql")]
"""The issue's comparison: (label, processes, database)."""
DIAGNOSTIC = [("1 worker, PostgreSQL", 1, "postgresql"), ("2 workers, SQLite", 2, "sqlite")]
"""With --diagnose: which part of the difference is PostgreSQL's, which the second process's."""


def send_comparison(
    server: str, sizes: list[int], small: bool, diagnose: bool = False, repeat: int = 1
) -> None:
    if not Path(SMTP_SINK).exists():
        print(f"  (send skipped: install the Debian package postfix for {SMTP_SINK})")
        return
    for n in sizes:
        figures: dict[str, list[float]] = {}
        runs = (COMPARED + (DIAGNOSTIC if diagnose else [])) * repeat  # interleaved: a slow
        for label, workers, backend in runs:  # spell of a shared machine hits every one
            folder = Path(tempfile.mkdtemp(prefix="masthead-scale-send-"))
            port = free_port()
            sink = start_sink("smtp-sink", port)
            env = dict(os.environ, MASTHEAD_SECRET=SECRET)
            name = None
            try:
                if backend == "postgresql":
                    url, name = new_database(server)
                    env["MASTHEAD_DATABASE_URL"] = os.environ["MASTHEAD_DATABASE_URL"] = url
                root = make_publication(folder, n, port, 4, small)
                os.environ.pop("MASTHEAD_DATABASE_URL", None)
                busy = machine_cpu()
                sent, seconds, rss, cpu = run_senders(root, workers, env, worker=workers > 1)
                busy = machine_cpu() - busy
            finally:
                sink_cpu = process_cpu(sink.pid)
                sink.terminate()
                sink.wait()
                os.environ.pop("MASTHEAD_DATABASE_URL", None)
                if name:
                    drop_database(server, name)
                shutil.rmtree(folder, ignore_errors=True)
            assert sent == n, (sent, n)
            figures.setdefault(label, []).append(n / seconds)
            each = ", ".join(f"{r:.0f}" for r in rss)
            print(
                f"  send {n:>8,} into smtp-sink, {label:22}: {seconds:6.1f} s = "
                f"{n / seconds:6,.0f} msg/s (whole processes); peak RSS {each} MiB; "
                f"CPU µs/msg: senders {cpu * 1e6 / n:.0f}, sink {sink_cpu * 1e6 / n:.0f}, "
                f"the rest (database…) {(busy - cpu - sink_cpu) * 1e6 / n:.0f}"
            )
        pg, lite = figures["2 workers, PostgreSQL"], figures["1 sender, SQLite"]
        ratios = sorted(a / b for a, b in zip(pg, lite, strict=True))
        each = ", ".join(f"{r:.2f}" for r in ratios)
        median = statistics.median(ratios)
        print(
            f"    2 workers on PostgreSQL / 1 sender on SQLite: median {median:.2f}x of "
            f"{len(ratios)} interleaved pairs ({each}) (target >= 1)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--send", default="100000", help="list sizes of the send comparison")
    parser.add_argument("--database-url", default=SERVER, help="a PostgreSQL server/database")
    parser.add_argument("--copy", type=int, default=100_000, help="list size of db copy")
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--skip-copy", action="store_true")
    parser.add_argument("--skip-send", action="store_true")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="also send with 1 worker on PostgreSQL and 2 workers on SQLite",
    )
    parser.add_argument(
        "--issues",
        choices=["both", "demo", "small"],
        default="both",
        help="send the demo issue (~63 KB a message), the one-item issue (~8.5 KB), or both",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="interleaved runs of each send (median ratio)"
    )
    args = parser.parse_args()
    server = args.database_url.replace("postgresql+psycopg://", "postgresql://")
    print(
        f"masthead scale benchmark: {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; PostgreSQL "
        + subprocess.run(
            ["psql", server, "-Atc", "SHOW server_version"], capture_output=True, text=True
        ).stdout.strip()
    )
    if not args.skip_import:
        import_and_outbox(server, args.subscribers)
    if not args.skip_copy:
        copy_to_postgresql(server, args.copy)
    if not args.skip_send:
        for small in {"both": (False, True), "demo": (False,), "small": (True,)}[args.issues]:
            print(
                "  the demo issue (~63 KB a message):"
                if not small
                else "  a one-item issue (~8.5 KB a message):"
            )
            send_comparison(
                server, [int(s) for s in args.send.split(",")], small, args.diagnose, args.repeat
            )


if __name__ == "__main__":
    main()
