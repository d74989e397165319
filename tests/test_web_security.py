"""Hostile content runs nothing: every page is parsed and checked for anything executable.

(The same pages are loaded in headless Chromium in test_web_browser.py, which asserts that
no dialog opens.)"""

from __future__ import annotations

import json
from pathlib import Path

import feedparser
import lxml.html
import pytest

from conftest import make_publication
from masthead.build import build

EVIL_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(\'svg-onload\')">'
    "<script>alert('svg-script')</script><rect width='10' height='10'/></svg>"
)

HOSTILE_ITEM = """---
title: "<script>alert('title')</script> and \\"quotes\\" </title>"
kind: reprint
authors: ["</script><script>alert('author')</script>"]
source: "<img src=x onerror=alert('source')>"
source_url: "https://example.com/?q=\\"><script>alert('url')</script>"
summary: "</script><svg onload=alert('summary')>"
image: evil.svg
image_alt: "\\" onerror=\\"alert('alt')"
caption: "<b onmouseover=alert('caption')>hover</b>"
---

<script>alert('body')</script>

<img src=x onerror="alert('img')">

<svg><script>alert('inline-svg')</script></svg> <svg/onload=alert('svg')>

[a javascript link](javascript:alert('link')) and [another](JaVaScRiPt:alert('case'))
and [data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==) and
<javascript:alert('autolink')> and [vb](vbscript:msgbox) and [ok](https://example.org/ok).

![an svg payload](evil.svg "<i onclick=alert('fig')>")

<a href="javascript:alert('raw')" onclick="alert('raw-click')">raw anchor</a>

<iframe src="javascript:alert('frame')"></iframe> <object data="evil.svg"></object>

```html
<script>alert('code')</script>
```

| <b onclick=alert('th')>head</b> |
| --- |
| <script>alert('td')</script> |
"""

EVENT_ATTRIBUTES = ("on",)
FORBIDDEN_TAGS = ("iframe", "object", "embed", "svg", "math", "base", "frame", "style")
DANGEROUS = ("javascript:", "vbscript:", "data:")


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_publication(
        tmp_path_factory.mktemp("hostile") / "pub",
        items={"evil.md": HOSTILE_ITEM, "plain.md": "---\ntitle: Plain\n---\n\nText.\n"},
    )
    (root / "issues" / "2020-03" / "evil.svg").write_text(EVIL_SVG, "utf-8")
    build(root)
    return root / "_site"


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "pagefind" not in p.parts)


def test_no_script_event_handler_or_dangerous_url_comes_from_content(hostile_site: Path) -> None:
    for path in _pages(hostile_site):
        doc = lxml.html.fromstring(path.read_bytes())
        for el in doc.iter():
            if not isinstance(el.tag, str):
                continue
            assert el.tag not in FORBIDDEN_TAGS, f"{path}: <{el.tag}>"
            if el.tag == "form":
                assert el.get("role") == "search" and el.get("method") == "get"
            for name, value in el.attrib.items():
                assert not name.lower().startswith(EVENT_ATTRIBUTES), f"{path}: {name}={value}"
                if name in ("href", "src", "action", "data", "formaction"):
                    assert not value.strip().lower().startswith(DANGEROUS), f"{path}: {value}"
            if el.tag == "script":
                if el.get("type") == "application/ld+json":
                    data = json.loads(el.text)  # still valid JSON, and cannot close the element
                    assert "</" not in el.text and "<script" not in el.text.lower()
                    assert data["@context"] == "https://schema.org"
                else:
                    assert el.get("src", "").endswith("static/search.js")


def test_hostile_text_is_shown_as_text(hostile_site: Path) -> None:
    doc = lxml.html.fromstring((hostile_site / "2020-03" / "evil" / "index.html").read_bytes())
    article = doc.cssselect("main article")[0]
    shown = article.text_content()
    assert "<script>alert('body')</script>" in shown
    assert "<img src=x onerror=\"alert('img')\">" in shown
    assert "<svg/onload=alert('svg')>" in shown
    assert doc.cssselect("h1.item-title")[0].text_content().startswith("<script>alert('title')")
    links = [a.get("href") for a in article.cssselect("a")]
    assert "https://example.org/ok" in links
    assert not any(h.lower().startswith(DANGEROUS) for h in links)
    # the text of a dropped link stays readable
    assert "a javascript link" in shown and "another" in shown
    img = article.cssselect("figure img")[0]
    assert img.get("alt") == "\" onerror=\"alert('alt')"
    assert img.get("onerror") is None


def test_svg_payload_is_only_ever_an_image(hostile_site: Path) -> None:
    """An SVG is shown with <img> (where scripts never run), and its copy on the site is
    cleaned for a reader who opens the file itself."""
    copied = (hostile_site / "2020-03" / "evil.svg").read_text("utf-8")
    assert "<rect" in copied  # the drawing stays; what would run if opened directly goes
    assert "script" not in copied and "onload" not in copied and "alert" not in copied
    uses = []
    for path in _pages(hostile_site):
        doc = lxml.html.fromstring(path.read_bytes())
        for el, attr, url, _ in doc.iterlinks():
            if url.endswith("evil.svg"):
                uses.append((el.tag, attr))
    assert uses and set(uses) == {("img", "src")}


def test_feeds_carry_hostile_text_escaped(hostile_site: Path) -> None:
    atom = feedparser.parse((hostile_site / "feed.xml").read_bytes())
    assert not atom.bozo
    content = atom.entries[0].content[0].value
    doc = lxml.html.fromstring(f"<div>{content}</div>")
    assert not doc.cssselect("script, iframe, object, svg")
    for el in doc.iter():
        assert not any(name.startswith("on") for name in el.attrib)
    feed = json.loads((hostile_site / "feed.json").read_text("utf-8"))
    html = feed["items"][0]["content_html"]
    assert "<script" not in html and "&lt;script&gt;" in html
