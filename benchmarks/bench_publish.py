"""Publish benchmarks (issue #8). Run: python benchmarks/bench_publish.py [--issues 500]

A generated archive site (per issue: a PDF and ten pages; plus the home page, feeds and a
search index), published to a local folder and over rsync (a stand-in for ssh that runs
the "remote" commands on this machine). Prints, per target:
- the first publish (everything copied);
- publishing the same site again (a no-op: the content hash is read, nothing written);
- publishing after one issue and the site-wide pages changed (one new release, the rest
  hard links);
- a rollback (one symlink switched).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from masthead.publish import publish, rollback
from masthead.site_check import write_stamp

FAKE_SSH = """#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in -l|-p|-o|-i) shift 2;; -*) shift;; *) break;; esac; done
shift
exec sh -c "$*"
"""


def make_site(root: Path, issues: int) -> None:
    root.mkdir(parents=True)
    (root / "masthead.toml").write_text('name = "Bench Bulletin"\n', "utf-8")
    site = root / "_site"
    for n in range(issues):
        folder = site / f"{2000 + n // 12}-{n % 12 + 1:02d}"
        folder.mkdir(parents=True)
        (folder / "issue.pdf").write_bytes(os.urandom(300_000))
        for item in range(10):
            page = folder / f"item-{item}" / "index.html"
            page.parent.mkdir()
            page.write_text(f"<!doctype html><title>{n}-{item}</title>" + "x" * 20_000, "utf-8")
    rewrite_site_pages(root, "v1")


def rewrite_site_pages(root: Path, version: str) -> None:
    """What a build after editing one issue rewrites: that issue, the home page, feeds."""
    site = root / "_site"
    for name in ("index.html", "feed.xml", "feed.json", "sitemap.xml"):
        path = site / name
        path.unlink(missing_ok=True)
        path.write_text(f"{version} " + "y" * 50_000, "utf-8")
    manifest = site / "manifest.json"
    manifest.unlink(missing_ok=True)
    manifest.write_text(json.dumps({"version": version, "issues": [], "pad": "y" * 50_000}))
    first = sorted(p for p in site.iterdir() if p.is_dir())[0]
    for page in first.rglob("index.html"):
        page.unlink()
        page.write_text(f"<!doctype html><title>{version}</title>" + "z" * 20_000, "utf-8")
    write_stamp(site, "bench_publish")  # the build's record of a whole site, as publish checks


def timed(label: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    report = fn(*args, **kwargs)
    seconds = time.perf_counter() - started
    extra = (
        "no-op"
        if report.noop
        else f"copied {report.copied:,} ({report.bytes_copied / 1e6:,.1f} MB), "
        f"linked {report.linked:,}"
        if not report.rolled_back
        else f"switched to {report.release}"
    )
    print(f"  {label:<34} {seconds:7.2f} s   {extra}")
    return report


def run(issues: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        tmp_path = Path(tmp)
        pub = tmp_path / "pub"
        make_site(pub, issues)
        files = sum(1 for p in (pub / "_site").rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in (pub / "_site").rglob("*") if p.is_file())
        print(f"Site: {issues} issues, {files:,} files, {size / 1e6:,.0f} MB")
        ssh = tmp_path / "fake-ssh"
        ssh.write_text(FAKE_SSH, "utf-8")
        ssh.chmod(0o755)
        targets = {"local folder": str(tmp_path / "local")}
        if shutil.which("rsync"):
            targets["rsync over (stand-in) ssh"] = f"bench-host:{tmp_path / 'remote'}"
        for name, to in targets.items():
            rewrite_site_pages(pub, "v1")
            print(f"{name}: {to}")
            timed("first publish", publish, pub, to, rsh=str(ssh))
            timed("unchanged site (no-op)", publish, pub, to, rsh=str(ssh))
            rewrite_site_pages(pub, "v2")
            timed("one issue + site pages changed", publish, pub, to, rsh=str(ssh))
            timed("rollback", rollback, to, rsh=str(ssh))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=500, help="issues in the archive")
    run(parser.parse_args().issues)


if __name__ == "__main__":
    sys.exit(main())
