"""Print-edition benchmarks (issue #2). Run: python benchmarks/bench_print.py [--archive 500]

Prints, with the target beside each figure:
- the demo build, whole process from a cold start (target <= 1 s);
- the PDF stage for an 8-page issue, warm (target <= 0.3 s);
- a no-op `masthead build` of a 500-issue archive, whole process (target <= 1 s);
- peak memory of building one 8-page issue, whole process (target <= 200 MB).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from archive import generate_archive, write_issue

MASTHEAD = [sys.executable, "-m", "masthead.cli"]


def run(args: list[str]) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of one whole-process run of exactly this child."""
    start = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(args)} failed with status {child.returncode}")
    return elapsed, usage.ru_maxrss


def report(name: str, value: float, target: float, unit: str) -> None:
    verdict = "ok" if value <= target else "OVER"
    print(
        f"{name:<52} {value:8.3f} {unit:<3} (target <= {target:g} {unit}, "
        f"{value / target:.2f}x of target) {verdict}"
    )


def bench_demo_cold(tmp: Path, runs: int = 5) -> None:
    times = []
    for i in range(runs):
        target = tmp / f"demo-{i}"
        subprocess.run([*MASTHEAD, "demo", str(target), "--quiet"], check=True)
        shutil.rmtree(target / "_site")
        shutil.rmtree(target / ".masthead")
        elapsed, _ = run([*MASTHEAD, "build", str(target), "--quiet"])
        times.append(elapsed)
    report("demo build, whole process, cold (median of 5)", statistics.median(times), 1.0, "s")


def bench_pdf_stage(tmp: Path) -> None:
    from masthead.content import load_issue, load_publication
    from masthead.render.print import render_print_edition

    root = tmp / "eight"
    generate_archive(root, issues=0)
    write_issue(root / "issues" / "2020-03", 3, 45, date(2020, 3, 1), items=9, words=6000, seed=7)
    pub = load_publication(root)
    issue = load_issue(pub, "2020-03")
    edition = render_print_edition(pub, issue)  # warm up: fonts, caches
    same, edited = [], []
    item = root / "issues" / "2020-03" / "item-03.md"
    for n in range(10):
        start = time.perf_counter()
        render_print_edition(pub, issue)
        same.append(time.perf_counter() - start)
        # an editor's change: one more sentence in one item, so Typst must lay out again
        item.write_text(item.read_text() + f"\nOne more sentence, number {n}.\n")
        changed = load_issue(pub, "2020-03")
        start = time.perf_counter()
        render_print_edition(pub, changed)
        edited.append(time.perf_counter() - start)
    pages = edition.page_count
    report(f"PDF stage, {pages}-page issue, warm, unchanged", statistics.median(same), 0.3, "s")
    report(
        f"PDF stage, {pages}-page issue, warm, one item edited", statistics.median(edited), 0.3, "s"
    )
    _, rss = run([*MASTHEAD, "build", str(root), "--quiet", "--force"])
    report(f"peak RSS, building the {edition.page_count}-page issue", rss / 1024, 200, "MB")


def bench_noop_archive(tmp: Path, issues: int) -> None:
    root = generate_archive(tmp / "archive", issues=issues)
    start = time.perf_counter()
    subprocess.run([*MASTHEAD, "build", str(root), "--quiet"], check=True)
    print(f"(first build of the {issues}-issue archive took {time.perf_counter() - start:.1f} s)")
    times = [run([*MASTHEAD, "build", str(root), "--quiet"])[0] for _ in range(5)]
    report(f"no-op build, {issues}-issue archive (median of 5)", statistics.median(times), 1.0, "s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archive", type=int, default=500, help="issues in the no-op benchmark")
    args = parser.parse_args()
    print(f"Masthead print benchmarks on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        bench_demo_cold(Path(tmp))
        bench_pdf_stage(Path(tmp))
        bench_noop_archive(Path(tmp), args.archive)


if __name__ == "__main__":
    main()
