"""Benchmark: `masthead send` of the demo issue, personalised, to 10,000 and 100,000
subscribers on 127.0.0.1, against Postfix's smtp-sink (Debian package `postfix`, faster than
the sender) and, for comparison, aiosmtpd (tests/smtp_sink.py, slower than the sender).

    python benchmarks/bench_send.py                  # 10k and 100k into smtp-sink, 10k aiosmtpd
    python benchmarks/bench_send.py --sizes 20000 --sinks smtp-sink

Prints messages per second (the command's own figure: from the first claim to the last
recorded answer) and the sender's peak RSS. Needs `/usr/sbin/smtp-sink`:
`DEBIAN_FRONTEND=noninteractive apt-get install -y postfix` (not installed by CI).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SMTP_SINK = "/usr/sbin/smtp-sink"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no sink on port {port}")


def start_sink(kind: str, port: int) -> subprocess.Popen[bytes]:
    if kind == "smtp-sink":
        # -c: count messages; backlog 1000
        cmd = [SMTP_SINK, "-c", f"127.0.0.1:{port}", "1000"]
        if os.geteuid() == 0:  # smtp-sink refuses to run as root without -u
            cmd[1:1] = ["-u", "nobody"]
    else:
        cmd = [sys.executable, str(HERE.parent / "tests" / "smtp_sink.py"), str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


def make_publication(
    folder: Path, n: int, port: int, concurrency: int, small: bool = False
) -> Path:
    from masthead.build import build
    from masthead.content import load_publication
    from masthead.scaffold import copy_demo
    from masthead.store import dispose_engines, open_store, subscribers, utcnow

    root = copy_demo(folder / "pub")
    if small:  # one short item instead of the demo's seven (about 8.5 KB per message)
        issue = root / "issues" / "2020-03"
        for item in issue.glob("*.md"):
            if item.name != "choir-rehearsals.md":
                item.unlink()
        toml = issue / "issue.toml"
        toml.write_text(re.sub(r"(?ms)^items = \[.*?\]\n", "", toml.read_text("utf-8")), "utf-8")
    toml = (root / "masthead.toml").read_text("utf-8")
    toml = re.sub(r"(?m)^port = \d+", f"port = {port}\nconcurrency = {concurrency}", toml)
    (root / "masthead.toml").write_text(toml, "utf-8")
    build(root)
    pub = load_publication(root)
    store = open_store(pub)
    now = utcnow()
    chunk = 10_000
    with store.begin() as conn:
        for start in range(0, n, chunk):
            rows = [
                {
                    "email": f"reader{i}@example{i % 50}.org",
                    "email_key": f"reader{i}@example{i % 50}.org",
                    "name": f"Reader Number {i}" if i % 3 else f"Zoë Lindqvist {i}",
                    "status": "active",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(start, min(n, start + chunk))
            ]
            conn.execute(subscribers.insert(), rows)
    dispose_engines()
    return root


# `masthead` that prints its own peak RSS at exit: VmHWM is the process's own memory
# (wait4's ru_maxrss would include the benchmark's, inherited through fork before exec).
REPORT_HWM = (
    "import atexit, sys\n"
    "def hwm():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            print('VmHWM', line.split()[1], file=sys.stderr)\n"
    "atexit.register(hwm)\n"
    "from masthead.cli import main\n"
    "main()\n"
)


def run_send_rss(root: Path) -> tuple[int, float, float, float]:
    """(messages, seconds, msg/s, peak RSS MiB) of one `masthead send` process; the RSS is
    the child's own (VmHWM)."""
    env = dict(os.environ, MASTHEAD_SECRET="benchmark-secret-0123456789")
    out_file = tempfile.TemporaryFile()  # noqa: SIM115 (the child writes to it)
    pid = os.posix_spawn(
        sys.executable,
        [
            sys.executable,
            "-c",
            REPORT_HWM,
            "send",
            str(root),
            "--issue",
            "2020-03",
            "--yes",
            "-q",
        ],
        env,
        file_actions=[
            (os.POSIX_SPAWN_DUP2, out_file.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, out_file.fileno(), 2),
        ],
    )
    _, status = os.waitpid(pid, 0)
    out_file.seek(0)
    text = out_file.read().decode("utf-8", "replace")
    match = re.search(r"sent ([\d,]+) in ([\d.]+) s", text)
    if os.waitstatus_to_exitcode(status) != 0 or not match:
        raise RuntimeError(f"send failed:\n{text[-3000:]}")
    sent = int(match.group(1).replace(",", ""))
    seconds = float(match.group(2))
    hwm = re.search(r"VmHWM (\d+)", text)
    return sent, seconds, sent / seconds, int(hwm.group(1)) / 1024 if hwm else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--sinks", default="smtp-sink,aiosmtpd")
    parser.add_argument("--aiosmtpd-size", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--small",
        action="store_true",
        help="a one-item issue (~8.5 KB) instead of the demo (~63 KB)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"masthead send benchmark: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"concurrency {args.concurrency}, "
        f"load average {os.getloadavg()[0]:.1f} (other work on the machine slows the figures)"
    )
    for kind in args.sinks.split(","):
        if kind == "smtp-sink" and not Path(SMTP_SINK).exists():
            print(f"  (skipped smtp-sink: install the Debian package postfix for {SMTP_SINK})")
            continue
        for n in sizes if kind == "smtp-sink" else [args.aiosmtpd_size]:
            folder = Path(tempfile.mkdtemp(prefix="masthead-bench-"))
            port = free_port()
            sink = start_sink(kind, port)
            try:
                root = make_publication(folder, n, port, args.concurrency, args.small)
                sent, seconds, rate, rss = run_send_rss(root)
            finally:
                sink.terminate()
                sink.wait()
                shutil.rmtree(folder, ignore_errors=True)
            print(
                f"  {kind:9} {n:>8,} recipients: sent {sent:,} in {seconds:6.1f} s = "
                f"{rate:7,.0f} msg/s; sender peak RSS {rss:6.1f} MiB"
            )


if __name__ == "__main__":
    main()
