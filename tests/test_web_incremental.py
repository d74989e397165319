"""A rebuild after editing one item touches that issue and the site-wide pages only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lxml.html

from conftest import make_publication, write_item
from masthead.build import build
from masthead.render.web import search

SITE_WIDE = {
    "index.html",
    "feed.xml",
    "feed.json",
    "sitemap.xml",
    "manifest.json",
    ".masthead-build.json",  # the build's record of the whole site, rewritten by each build
    "publisher",
    "search",
    "static",
    "pagefind",
}


def _publication(root: Path, issues: int) -> Path:
    make_publication(root)
    for n in range(issues):
        folder = root / "issues" / f"2021-{n + 1:02d}"
        folder.mkdir()
        (folder / "issue.toml").write_text(
            f"volume = 2\nnumber = {n + 3}\ndate = 2021-{n + 1:02d}-01\n", "utf-8"
        )
        write_item(folder, "one.md", f"title: One of {n}", "First story.")
        write_item(folder, "two.md", f"title: Two of {n}", "Second story.")
    return root


def _inodes(site: Path) -> dict[str, int]:
    return {str(p.relative_to(site)): p.stat().st_ino for p in site.rglob("*") if p.is_file()}


def _edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text("utf-8").replace(old, new), "utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_editing_one_item_rewrites_only_its_issue_and_site_pages(tmp_path: Path) -> None:
    root = _publication(tmp_path / "pub", issues=3)
    build(root)
    site = root / "_site"
    before = _inodes(site)
    _edit(root / "issues" / "2021-02" / "two.md", "Two of 1", "Second thoughts")
    report = build(root)
    assert [b.slug for b in report.built] == ["2021-02"]
    after = _inodes(site)
    changed = {path for path in after if before.get(path) != after[path]}
    tops = {Path(path).parts[0] for path in changed}
    assert tops <= SITE_WIDE | {"2021-02"}, tops
    for other in ("2020-03", "2021-01", "2021-03"):
        assert not any(p.startswith(other + "/") for p in changed), other
    # the site pages still list every issue, with the new title, from the stored data
    home = lxml.html.fromstring((site / "index.html").read_bytes())
    assert len(home.cssselect("ul.issue-list li")) == 4
    feed = json.loads((site / "feed.json").read_text("utf-8"))
    assert "Second thoughts" in json.dumps(feed)
    assert len(feed["items"]) == 4
    manifest = json.loads((site / "manifest.json").read_text("utf-8"))
    assert all("html" in e and all("html" in i for i in e["items"]) for e in manifest["issues"])


def test_only_the_search_part_holding_the_edited_issue_is_indexed_again(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(search, "PART_ISSUES", 2)
    root = _publication(tmp_path / "pub", issues=3)  # 4 issues: two parts of two
    build(root)
    site = root / "_site"
    parts = sorted(p.name for p in (site / "pagefind").iterdir())
    assert parts == ["part-000", "part-001"]
    before = _inodes(site)
    _edit(root / "issues" / "2020-03" / "a.md", "Text.", "Other text.")  # the oldest issue
    build(root)
    after = _inodes(site)
    changed = {
        Path(p).parts[1] for p in after if p.startswith("pagefind/") and before.get(p) != after[p]
    }
    assert changed == {"part-000"}
    page = lxml.html.fromstring((site / "search" / "index.html").read_bytes())
    assert page.get_element_by_id("mh-search").get("data-parts") == "part-001 part-000"


def test_a_removed_issue_leaves_the_archive_feeds_and_search(tmp_path: Path) -> None:
    import shutil

    root = _publication(tmp_path / "pub", issues=2)
    build(root)
    shutil.rmtree(root / "issues" / "2021-01")
    build(root)
    site = root / "_site"
    assert not (site / "2021-01").exists()
    home = lxml.html.fromstring((site / "index.html").read_bytes())
    hrefs = [a.get("href") for a in home.cssselect("ul.issue-list a")]
    assert hrefs == ["2021-02/index.html", "2020-03/index.html"]
    assert "2021-01" not in (site / "feed.xml").read_text("utf-8")
    assert "2021-01" not in (site / "sitemap.xml").read_text("utf-8")
    entry = json.loads((site / "pagefind" / "part-000" / "pagefind-entry.json").read_text())
    assert entry["languages"]["en"]["page_count"] == 3
