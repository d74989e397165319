"""Atom, JSON Feed and sitemap: parsed by feedparser, validated against RELAX NG and checked
for what a strict reader requires."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import lxml.html
from lxml import etree

from conftest import make_publication, write_item
from masthead.build import build
from masthead.render.web.site import FEED_ISSUES

ATOM = "{http://www.w3.org/2005/Atom}"
SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
SCHEMA = Path(__file__).parent / "schemas" / "atom.rng"
BASE = "https://bulletin.example.org/"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
TITLES = [
    "A new flood plan for the lower valley",
    "Letter to the Town Council on the footbridge",
    "The State of the Lower Valley River, 2019",
]


def _absolute(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def test_atom_feed_parses_cleanly_with_feedparser(built_demo: Path) -> None:
    feed = feedparser.parse((built_demo / "_site" / "feed.xml").read_bytes())
    assert feed.bozo == 0, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.title == "Riverside Bulletin"
    assert feed.feed.author == "Riverside Community Association"
    assert len(feed.entries) == 1
    entry = feed.entries[0]
    assert entry.title == "Volume 3 Number 45, March 2020"
    assert entry.link == f"{BASE}2020-03/"
    enclosure = entry.enclosures[0]
    assert enclosure.href == f"{BASE}2020-03/riverside-bulletin-2020-03.pdf"
    assert enclosure.type == "application/pdf" and int(enclosure.length) > 10_000
    content = lxml.html.fromstring(entry.content[0].value)
    headings = [h.text_content() for h in content.iter("h2")]
    assert headings[:3] == TITLES and len(headings) == 7
    links = [a.get("href") for a in content.iter("a")]
    assert f"{BASE}2020-03/lead/" in links
    images = [img.get("src") for img in content.iter("img")]
    assert images == [f"{BASE}2020-03/river.svg"]


def test_atom_feed_is_valid_against_the_rfc_4287_relax_ng_schema(built_demo: Path) -> None:
    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    doc = etree.parse(str(built_demo / "_site" / "feed.xml"))
    assert schema.validate(doc), schema.error_log


def test_atom_feed_meets_the_rfc_rules_a_schema_cannot_express(built_demo: Path) -> None:
    """RFC 4287 §4.1.1: ids are absolute IRIs, one self link, dates are RFC 3339 with a zone,
    at most one alternate link per type, an author on the feed or every entry."""
    root = etree.parse(str(built_demo / "_site" / "feed.xml")).getroot()
    assert root.tag == f"{ATOM}feed"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    for holder in [root, *root.iter(f"{ATOM}entry")]:
        ids = holder.findall(f"{ATOM}id")
        assert len(ids) == 1 and _absolute(ids[0].text)
        for tag in ("updated", "published"):
            for el in holder.findall(f"{ATOM}{tag}"):
                assert RFC3339.match(el.text), el.text
                datetime.fromisoformat(el.text.replace("Z", "+00:00"))
        alternates = [
            (link.get("type"), link.get("hreflang"))
            for link in holder.findall(f"{ATOM}link")
            if link.get("rel", "alternate") == "alternate"
        ]
        assert len(alternates) == len(set(alternates)) == 1
        for link in holder.findall(f"{ATOM}link"):
            assert _absolute(link.get("href"))
    selfs = [link for link in root.findall(f"{ATOM}link") if link.get("rel") == "self"]
    assert [link.get("href") for link in selfs] == [f"{BASE}feed.xml"]
    assert root.find(f"{ATOM}author/{ATOM}name").text
    for entry in root.iter(f"{ATOM}entry"):
        assert entry.find(f"{ATOM}content").get("type") == "html"


def test_json_feed_follows_version_1_1(built_demo: Path) -> None:
    raw = (built_demo / "_site" / "feed.json").read_text("utf-8")
    feed = json.loads(raw)
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"] == "Riverside Bulletin"
    assert feed["home_page_url"] == BASE and feed["feed_url"] == f"{BASE}feed.json"
    assert feed["language"] == "en"
    assert feed["authors"] == [
        {"name": "Riverside Community Association", "url": "https://example.org"}
    ]
    (item,) = feed["items"]
    assert set(item) <= {
        "id", "url", "title", "content_html", "summary", "date_published", "attachments",
    }  # fmt: skip
    assert item["id"] == item["url"] == f"{BASE}2020-03/"
    assert RFC3339.match(item["date_published"])
    headings = [h.text_content() for h in lxml.html.fromstring(item["content_html"]).iter("h2")]
    assert headings[:3] == TITLES
    (pdf,) = item["attachments"]
    assert pdf["mime_type"] == "application/pdf" and _absolute(pdf["url"])
    assert pdf["size_in_bytes"] > 10_000
    # (feedparser 6.0 reads no JSON Feed: the spec's required keys and types are checked here)
    assert all(isinstance(feed[k], str) for k in ("version", "title", "home_page_url"))
    assert isinstance(item["content_html"], str) and isinstance(item["id"], str)


def test_sitemap_lists_every_page_with_absolute_urls(built_demo: Path) -> None:
    root = etree.parse(str(built_demo / "_site" / "sitemap.xml")).getroot()
    assert root.tag == f"{SITEMAP}urlset"
    locs = [url.find(f"{SITEMAP}loc").text for url in root]
    assert locs[:3] == [BASE, f"{BASE}publisher/", f"{BASE}2020-03/"]
    # the main language's 3 + 7 pages, then the Persian sub-site's 3 + 5
    assert len(locs) == 3 + 7 + 3 + 5 and len(set(locs)) == len(locs)
    assert all(loc.startswith(f"{BASE}fa/") for loc in locs[10:])
    assert f"{BASE}2020-03/letter-to-the-council/" in locs
    lastmods = [url.find(f"{SITEMAP}lastmod") for url in root]
    assert {el.text for el in lastmods if el is not None} == {"2020-03-01"}


def test_feeds_carry_the_newest_issues_only(tmp_path: Path) -> None:
    root = make_publication(tmp_path / "pub")
    for n in range(FEED_ISSUES + 2):
        folder = root / "issues" / f"2021-{n:02d}"
        folder.mkdir()
        (folder / "issue.toml").write_text(
            f"volume = 2\nnumber = {n + 3}\ndate = 2021-01-01\n", "utf-8"
        )
        write_item(folder, "x.md", f"title: Story {n}")
    build(root)
    atom = feedparser.parse((root / "_site" / "feed.xml").read_bytes())
    assert not atom.bozo
    assert len(atom.entries) == FEED_ISSUES
    assert atom.entries[0].link.endswith(f"/2021-{FEED_ISSUES + 1:02d}/")
    feed = json.loads((root / "_site" / "feed.json").read_text("utf-8"))
    assert [i["id"] for i in feed["items"]] == [e.link for e in atom.entries]
    sitemap = etree.parse(str(root / "_site" / "sitemap.xml")).getroot()
    assert len(sitemap) == 2 + 2 * (FEED_ISSUES + 3)  # every issue and item, not just the feed's
    # the newest issues go: older ones come back into the feeds with their whole content
    for n in (FEED_ISSUES, FEED_ISSUES + 1):
        shutil.rmtree(root / "issues" / f"2021-{n:02d}")
    build(root)
    atom = feedparser.parse((root / "_site" / "feed.xml").read_bytes())
    assert not atom.bozo and len(atom.entries) == FEED_ISSUES
    assert atom.entries[-1].link.endswith("/2021-00/")
    assert "<h2><a" in atom.entries[-1].content[0].value
    assert "Story 0" in atom.entries[-1].content[0].value
