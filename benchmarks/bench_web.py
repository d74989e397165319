"""Web-edition benchmarks (issue #3). Run: python benchmarks/bench_web.py [--issues 500]

Prints, with the target beside each figure:
- the web edition of one issue (the demo), warm (target <= 0.2 s);
- a full build of a generated archive (500 issues, 5,000 items), whole process, with the
  split between the print edition, the web pages and the Pagefind index (target <= 60 s);
- a rebuild after editing one item (target <= 2 s), and what it rewrote;
- the search index build for the archive (target <= 30 s);
- peak RSS of the full build (target <= 1 GB);
- a `masthead search` over the archive, whole process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from archive import generate_archive

MASTHEAD = [sys.executable, "-c", "from masthead.cli import main; main()"]
CHILD_ENV = dict(os.environ)


def freeze_code(tmp: Path) -> None:
    """Run the builds on a copy of Masthead's code: a build renders every issue again when
    Masthead's own files change, and other work in the same tree must not do that to the
    rebuild measured here."""
    import masthead

    target = tmp / "code" / "masthead"
    shutil.copytree(
        Path(masthead.__file__).parent, target, ignore=shutil.ignore_patterns("__pycache__")
    )
    CHILD_ENV["PYTHONPATH"] = str(target.parent)


# Runs a build in a child process and reports where the time went: each edition hook and
# Pagefind are wrapped with a timer (instrumentation only; the build itself is unchanged).
TIMED_BUILD = r"""
import json, sys, time
from masthead import build as b
from masthead.render.web import search, site
spent = {"web_issue": 0.0, "web_site": 0.0, "pagefind": 0.0}
def timed(key, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - start
    return wrapper
search.build_pagefind_index = timed("pagefind", search.build_pagefind_index)
for name in ("_stage", "_publish", "_prepare_state", "_site_damage", "write_stamp"):
    spent[name] = 0.0
    setattr(b, name, timed(name, getattr(b, name)))
issue_editions, site_editions = b.issue_editions(), b.site_editions()
spent["other_editions"] = 0.0
b.issue_editions = lambda: [
    timed("web_issue" if f is site.render_web_issue else "other_editions", f)
    for f in issue_editions
]
b.site_editions = lambda: [
    timed("web_site" if f is site.render_web_site else "other_editions", f)
    for f in site_editions
]
start = time.perf_counter()
report = b.build(sys.argv[1], force="--force" in sys.argv)
spent["total"] = time.perf_counter() - start
spent["issues_built"] = len(report.built)
print(json.dumps(spent))
"""


KEYS = (
    "_stage",
    "_publish",
    "_prepare_state",
    "_site_damage",
    "write_stamp",
    "web_issue",
    "web_site",
    "other_editions",
)


def report(name: str, value: float, target: float, unit: str) -> None:
    verdict = "ok" if value <= target else "OVER"
    print(
        f"{name:<56} {value:8.3f} {unit:<3} (target <= {target:g} {unit}, "
        f"{value / target:.2f}x of target) {verdict}"
    )


def timed_build(root: Path, *extra: str) -> tuple[dict[str, float], float, int]:
    """Split timings, whole-process wall time and the child's peak RSS (KiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", TIMED_BUILD, str(root), *extra],
        check=True,
        env=CHILD_ENV,
        capture_output=True,
        text=True,
    ).stdout
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return json.loads(out.strip().splitlines()[-1]), wall, max(after, before)


def bench_one_issue(tmp: Path) -> None:
    from masthead.build import build
    from masthead.content import load_issue, load_publication
    from masthead.render.web import render_web_issue
    from masthead.scaffold import copy_demo

    root = copy_demo(tmp / "demo")
    build(root)
    pub = load_publication(root)
    manifest = json.loads((pub.site_dir / "manifest.json").read_text())
    issue = load_issue(pub, "2020-03")
    times = []
    for n in range(10):
        entry = json.loads(json.dumps(manifest["issues"][0]))
        start = time.perf_counter()
        render_web_issue(pub, issue, entry, tmp / f"out-{n}")
        times.append(time.perf_counter() - start)
    report(
        f"web edition of one issue ({len(issue.items)} items), warm, median of 10",
        statistics.median(times[1:]),
        0.2,
        "s",
    )


def bench_archive(tmp: Path, issues: int) -> None:
    root = generate_archive(tmp / "archive", issues=issues)
    add_rare_words(root)
    items = sum(1 for _ in (root / "issues").glob("*/*.md"))
    split, wall, rss = timed_build(root)
    print(
        f"full build of {issues} issues / {items} items: print edition, other editions, load "
        f"{split['total'] - split['web_issue'] - split['web_site']:.1f} s, web pages "
        f"{split['web_issue'] + split['web_site'] - split['pagefind']:.1f} s, Pagefind "
        f"{split['pagefind']:.1f} s"
    )
    report(f"full build, {issues}-issue archive, whole process", wall, 60, "s")
    report(
        "  of which the web edition (pages + feeds + search index)",
        split["web_issue"] + split["web_site"],
        60,
        "s",
    )
    report(f"search index build (Pagefind over {items} item pages)", split["pagefind"], 30, "s")
    report("peak RSS of the full build", rss / 1024, 1024, "MB")

    site = root / "_site"
    state = root / ".masthead" / "build-state.json"
    print(
        f"(build state {state.stat().st_size / 1e6:.1f} MB; site "
        f"{sum(p.stat().st_size for p in site.rglob('*') if p.is_file()) / 1e6:.0f} MB)"
    )
    before = {p: p.stat().st_ino for p in site.rglob("*") if p.is_file()}
    edited = sorted((root / "issues").iterdir())[issues // 2] / "item-03.md"
    edited.write_text(edited.read_text() + "\nOne more sentence from the editor.\n")
    split, wall, _ = timed_build(root)
    after = {p: p.stat().st_ino for p in site.rglob("*") if p.is_file()}
    rewritten = [p for p in after if before.get(p) != after[p]]
    outside = {
        p.relative_to(site).parts[0]
        for p in rewritten
        if p.relative_to(site).parts[0] not in (edited.parent.name, "pagefind")
    }
    if split["issues_built"] != 1:
        print(
            f"  (WARNING: {split['issues_built']} issues were rendered again: Masthead's own "
            "files changed during the benchmark, which invalidates every issue)"
        )
    report("rebuild after editing one item, whole process", wall, 2, "s")
    checks = split["_site_damage"] + split["write_stamp"]
    print(
        f"  split: staging the last site (hard links) {split['_stage']:.2f} s, swapping it "
        f"{split['_publish']:.2f} s, saving the state {split['_prepare_state']:.2f} s, checking "
        f"the last site and recording the new one {checks:.2f}"
        " s, the issue's "
        f"web pages {split['web_issue']:.2f} s, site pages "
        f"{split['web_site'] - split['pagefind']:.2f} s, Pagefind {split['pagefind']:.2f} s; "
        f"other editions {split['other_editions']:.2f} s, the rest (print edition, loading) "
        f"{split['total'] - sum(split[k] for k in KEYS):.2f} s; "
        f"rewrote {len(rewritten)} files: the issue {edited.parent.name}/, pagefind/ and "
        f"{sorted(outside)}"
    )

    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(
            [*MASTHEAD, "search", str(root), "footbridge willow"],
            env=CHILD_ENV,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - start)
    report(f"`masthead search` over {items} items, whole process", statistics.median(times), 2, "s")
    bench_browser_query(site)


def bench_browser_query(site: Path) -> None:
    """Search in headless Chromium: the time from submitting a query to the results shown."""
    chromium = Path("/usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("(browser query not measured: pip install playwright)")
        return
    if not chromium.exists():
        print("(browser query not measured: apt-get install chromium)")
        return
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(site))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/search/index.html"
    query = """async (q) => {
        const status = document.getElementById("mh-search-status");
        status.textContent = "";
        const start = performance.now();
        document.getElementById("mh-search-q").value = q;
        document.getElementById("mh-search").requestSubmit();
        while (!status.textContent) await new Promise(r => setTimeout(r, 1));
        return performance.now() - start;
    }"""
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(chromium), args=["--headless", "--no-sandbox"]
            )
            page = browser.new_page()
            page.goto(url)
            first = page.evaluate(query, "willow") / 1000
            common = [page.evaluate(query, q) / 1000 for q in COMMON_QUERIES]
            rare = [page.evaluate(query, q) / 1000 for q in RARE_QUERIES]
            browser.close()
    finally:
        server.shutdown()
    print(f"(first query in the browser, loading every index part: {first * 1000:.0f} ms)")
    report(
        "search query in the browser, rare words (~10 hits), median",
        statistics.median(rare),
        0.1,
        "s",
    )
    report(
        "search query in the browser, words in every item, median",
        statistics.median(common),
        0.1,
        "s",
    )


# The generated text uses 30 words, each in nearly every item: a worst case for a search
# index. A few rare words are added to ten items to time a query as readers make them.
COMMON_QUERIES = ["footbridge", "meadow council", "river", "choir seeds", "station"]
RARE_QUERIES = ["heron", "otter", "kingfisher heron", "weir", "otters weir"]
RARE_TEXT = "A grey heron and two otters were seen near the weir."


def add_rare_words(root: Path) -> None:
    issues = sorted((root / "issues").iterdir())
    for folder in issues[:: max(1, len(issues) // 10)][:10]:
        item = folder / "item-01.md"
        item.write_text(item.read_text() + "\n" + RARE_TEXT + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--issues", type=int, default=500, help="issues in the archive (x10 items)")
    args = parser.parse_args()
    print(f"Masthead web benchmarks on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        freeze_code(Path(tmp))
        bench_one_issue(Path(tmp))
        bench_archive(Path(tmp), args.issues)


if __name__ == "__main__":
    main()
