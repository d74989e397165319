"""The web edition's language editions: the Persian sub-site ``_site/fa/`` of the bundled
demo, right to left, linked to the English site both ways; its feeds, sitemap entries,
digits and dates; valid HTML and no axe-core violations in real headless Chromium."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import feedparser
import lxml.html
import pytest
from lxml import etree

BASE = "https://bulletin.example.org/"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
XHTML = "{http://www.w3.org/1999/xhtml}"
FA_ITEMS = ["lead", "letter-to-the-council", "library-hours", "spring-cleanup", "seed-swap"]
FA_PAGES = [
    "fa/index.html",
    "fa/2020-03/index.html",
    "fa/2020-03/lead/index.html",
    "fa/2020-03/letter-to-the-council/index.html",
    "fa/publisher/index.html",
    "fa/search/index.html",
]


def _page(path: Path) -> lxml.html.HtmlElement:
    return lxml.html.fromstring(path.read_bytes())


def _html_pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "pagefind" not in p.parts)


def _url_to_file(site: Path, url: str) -> Path:
    """An absolute URL of the site (from ``base_url``) → the file under ``_site/``."""
    assert url.startswith(BASE), url
    path = unquote(url[len(BASE) :])
    return site / (path + "index.html" if path == "" or path.endswith("/") else path)


def test_persian_pages_are_right_to_left_and_english_ones_left_to_right(built_demo: Path) -> None:
    site = built_demo / "_site"
    for rel in FA_PAGES + [f"fa/2020-03/{slug}/index.html" for slug in FA_ITEMS]:
        doc = _page(site / rel)
        assert (doc.get("lang"), doc.get("dir")) == ("fa", "rtl"), rel
        assert doc.cssselect("link[rel=canonical]")[0].get("href").startswith(f"{BASE}fa/")
    for rel in ["index.html", "2020-03/index.html", "2020-03/lead/index.html"]:
        doc = _page(site / rel)
        assert (doc.get("lang"), doc.get("dir")) == ("en", "ltr"), rel
    # the English item pages were not overwritten by the Persian ones
    assert "flood plan" in _page(site / "2020-03" / "lead" / "index.html").cssselect("h1")[0].text
    # Persian text on the Persian pages, with the publication's translated name
    home = _page(site / "fa" / "index.html")
    assert home.cssselect("h1")[0].text_content() == "خبرنامهٔ ریورساید"
    assert not (site / "fa" / "2020-03" / "choir-rehearsals").exists()  # not translated


def test_hreflang_alternates_are_absolute_and_resolve(built_demo: Path) -> None:
    site = built_demo / "_site"
    checked = 0
    for path in _html_pages(site):
        doc = _page(path)
        links = {a.get("hreflang"): a.get("href") for a in doc.cssselect("link[hreflang]")}
        if not links:
            continue
        rel = path.relative_to(site).as_posix()
        assert set(links) == {"en", "fa", "x-default"}, rel
        assert links["x-default"] == links["en"] and "/fa/" not in links["en"]
        # each version names itself: this page's canonical URL is its own language's alternate
        canonical = doc.cssselect("link[rel=canonical]")[0].get("href")
        assert links[doc.get("lang")] == canonical, rel
        for href in links.values():
            assert _url_to_file(site, href).is_file(), f"{rel}: {href}"
        checked += 1
    # home, publisher, search, issue and the five translated items, in both languages
    assert checked == 2 * (3 + 1 + 5)
    # an item with no translation has no alternates and no language switch
    choir = _page(site / "2020-03" / "choir-rehearsals" / "index.html")
    assert not choir.cssselect("link[hreflang]") and not choir.cssselect(".lang-switch")


def test_language_switch_links_resolve_and_carry_their_language(built_demo: Path) -> None:
    site = built_demo / "_site"
    switches = 0
    for path in _html_pages(site):
        for a in _page(path).cssselect(".lang-switch a"):
            href = a.get("href")
            assert not urlsplit(href).scheme and not href.startswith("/"), href
            assert (path.parent / href).resolve().is_file(), f"{path}: {href}"
            target = _page((path.parent / href).resolve())
            assert a.get("hreflang") == a.get("lang") == target.get("lang")
            assert a.get("dir") == target.get("dir")
            assert a.text_content() == {"fa": "فارسی", "en": "English"}[a.get("lang")]
            switches += 1
    assert switches == 2 * (3 + 1 + 5)
    issue = _page(site / "fa" / "2020-03" / "index.html")
    assert issue.cssselect(".lang-switch a")[0].get("href") == "../../2020-03/index.html"


def test_persian_digits_dates_and_pdf_link(built_demo: Path) -> None:
    site = built_demo / "_site"
    issue = _page(site / "fa" / "2020-03" / "index.html")
    line = issue.cssselect(".issue-line")[0].text_content()
    assert line == "دوره ۳، شماره ۴۵ · اسفند ۱۳۹۸"
    assert issue.cssselect(".issue-line time")[0].get("datetime") == "2020-03-01"
    pdf = issue.cssselect(".pdf a")[0]
    assert pdf.get("href") == "riverside-bulletin-2020-03.fa.pdf"
    assert (site / "fa" / "2020-03" / pdf.get("href")).is_file()
    assert "کیلوبایت" in pdf.text_content() and "۲ صفحه" in pdf.text_content()
    in_print = [s.text_content() for s in issue.cssselect(".contents .in-print")]
    assert in_print[0] == "در نسخهٔ چاپی: صفحهٔ ۱"
    assert not any(c.isascii() and c.isdigit() for c in line + "".join(in_print))
    lead = _page(site / "fa" / "2020-03" / "lead" / "index.html")
    assert "۱ اسفند ۱۳۹۸" in lead.cssselect(".attribution")[0].text_content()
    home = _page(site / "fa" / "index.html")
    assert [h.text_content() for h in home.cssselect(".archive h3")] == ["دورهٔ ۳"]
    # the English pages keep Western digits and the Gregorian calendar
    english = _page(site / "2020-03" / "index.html")
    assert english.cssselect(".issue-line")[0].text_content() == "Volume 3 Number 45 · March 2020"


def test_manifest_points_at_the_persian_pages(built_demo: Path) -> None:
    site = built_demo / "_site"
    manifest = json.loads((site / "manifest.json").read_text("utf-8"))
    entry = manifest["issues"][0]
    assert entry["html"] == "2020-03/index.html"
    fa = entry["editions"]["fa"]
    assert fa["html"] == "fa/2020-03/index.html" and (site / fa["html"]).is_file()
    assert [i["slug"] for i in fa["items"]] == FA_ITEMS
    for item in fa["items"]:
        assert item["html"] == f"fa/2020-03/{item['slug']}/index.html"
        assert (site / item["html"]).is_file()
    record = json.loads((site / "fa" / "2020-03" / "search.json").read_text("utf-8"))
    assert [i["html"] for i in record["items"]] == [i["html"] for i in fa["items"]]


def test_manifest_keeps_the_build_state_out_of_the_language_editions(built_demo: Path) -> None:
    manifest = json.loads((built_demo / "_site" / "manifest.json").read_text("utf-8"))
    fa = manifest["issues"][0]["editions"]["fa"]
    assert not any(key.startswith("_") for key in fa)


def test_persian_feeds_parse_and_are_in_persian(built_demo: Path) -> None:
    site = built_demo / "_site"
    xml = (site / "fa" / "feed.xml").read_bytes()
    assert etree.fromstring(xml).get(XML_LANG) == "fa"
    feed = feedparser.parse(xml)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.feed.title == "خبرنامهٔ ریورساید"
    assert feed.feed.link == f"{BASE}fa/"
    [entry] = feed.entries
    assert entry.link == f"{BASE}fa/2020-03/"
    assert entry.title.startswith("دوره ۳، شماره ۴۵، اسفند ۱۳۹۸")
    [enclosure] = [link for link in entry.links if link.rel == "enclosure"]
    assert _url_to_file(site, enclosure.href).is_file()
    assert enclosure.href.endswith(".fa.pdf")
    for link in lxml.html.fromstring(entry.content[0].value).iter("a"):
        href = link.get("href")
        if href.startswith(BASE):
            assert _url_to_file(site, href).exists(), href
    data = json.loads((site / "fa" / "feed.json").read_text("utf-8"))
    assert data["language"] == "fa" and data["feed_url"] == f"{BASE}fa/feed.json"
    assert [i["url"] for i in data["items"]] == [f"{BASE}fa/2020-03/"]
    # the English feeds stay English
    english = feedparser.parse((site / "feed.xml").read_bytes())
    assert (
        english.feed.title == "Riverside Bulletin" and english.entries[0].link == f"{BASE}2020-03/"
    )


def test_sitemap_lists_both_languages_with_alternates(built_demo: Path) -> None:
    site = built_demo / "_site"
    root = etree.parse(str(site / "sitemap.xml")).getroot()
    urls = {u.find(f"{SITEMAP}loc").text: u for u in root}
    fa_locs = [loc for loc in urls if loc.startswith(f"{BASE}fa/")]
    assert len(fa_locs) == 3 + len(FA_ITEMS)
    for loc in urls:
        assert _url_to_file(site, loc).is_file(), loc
    lead = urls[f"{BASE}fa/2020-03/lead/"]
    alternates = {x.get("hreflang"): x.get("href") for x in lead.findall(f"{XHTML}link")}
    assert alternates == {"en": f"{BASE}2020-03/lead/", "fa": f"{BASE}fa/2020-03/lead/"}
    assert not urls[f"{BASE}2020-03/choir-rehearsals/"].findall(f"{XHTML}link")


def test_persian_pages_are_valid_html(built_demo: Path) -> None:
    from test_web_validity import _check

    site = built_demo / "_site"
    assert _check([site / rel for rel in FA_PAGES]) == []


def test_stylesheet_uses_logical_properties_only() -> None:
    from masthead.render.web import site

    css = (Path(site.__file__).parent / "static" / "masthead.css").read_text("utf-8")
    rules = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    physical = re.findall(r"[\w-]*\b(?:left|right)\b[\w-]*\s*:|:\s*(?:left|right)\b", rules)
    assert physical == []
    assert "list-style-type: persian" in css


# ----------------------------------------------------------------------------------------
# In real headless Chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from browser import ARGS, CHROMIUM, missing_tool

    if not CHROMIUM.exists():
        missing_tool(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site_url(built_demo: Path) -> Iterator[str]:
    """The built demo served on 127.0.0.1, the site at the sub-path /_site/."""
    from test_web_browser import _serve

    yield from _serve(built_demo)


@pytest.fixture
def tab(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 900, "height": 1200})
    page = context.new_page()
    yield page
    context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("path", FA_PAGES[:5])
def test_axe_finds_no_violation_on_persian_pages(tab, site_url: str, path: str, scheme) -> None:
    from test_web_browser import _axe

    tab.emulate_media(color_scheme=scheme)
    tab.goto(f"{site_url}_site/{path}")
    assert _axe(tab) == []


def test_persian_layout_reads_right_to_left(tab, site_url: str) -> None:
    from test_web_browser import _follow

    requests: list[str] = []
    tab.on("request", lambda r: requests.append(r.url))
    tab.goto(f"{site_url}_site/fa/2020-03/lead/index.html")
    tab.wait_for_load_state("networkidle")

    def box(selector: str) -> dict[str, float]:
        return tab.eval_on_selector(selector, "e => e.getBoundingClientRect().toJSON()")

    assert tab.evaluate("getComputedStyle(document.body).direction") == "rtl"
    # the site's name starts the header on the right, the navigation follows to its left
    assert box(".site-name")["left"] > box(".site-nav")["right"]
    # the quote's rule is on its right-hand (start) side
    quote = tab.eval_on_selector(
        "blockquote",
        "e => [getComputedStyle(e).borderRightWidth, getComputedStyle(e).borderLeftWidth]",
    )
    assert quote == ["3px", "0px"]
    # the headline is aligned to the right edge of the text column
    main = box("main")
    assert abs(box("h1")["right"] - (main["right"] - 16)) < 2
    # Persian text in Amiri (served by the site itself); no request leaves 127.0.0.1
    assert tab.evaluate(
        "document.fonts.ready.then(() => document.fonts.check('16px Amiri', 'طرح'))"
    )
    assert all(url.startswith(site_url) for url in requests), requests
    # the language switch leads to the English page and back
    _follow(tab, ".lang-switch a", f"{site_url}_site/2020-03/lead/index.html")
    assert tab.url == f"{site_url}_site/2020-03/lead/index.html"
    assert tab.evaluate("getComputedStyle(document.body).direction") == "ltr"
    _follow(tab, ".lang-switch a[hreflang=fa]", f"{site_url}_site/fa/2020-03/lead/index.html")
    assert tab.url == f"{site_url}_site/fa/2020-03/lead/index.html"


def test_persian_search_finds_persian_items(tab, site_url: str) -> None:
    tab.goto(f"{site_url}_site/fa/search/index.html?q=کتابخانه")
    tab.wait_for_selector("#mh-search-results li")
    links = tab.eval_on_selector_all("#mh-search-results li a", "els => els.map(a => a.href)")
    assert f"{site_url}_site/fa/2020-03/library-hours/index.html" in links
    assert all("/_site/fa/" in link for link in links)
    assert tab.inner_text("#mh-search-status").startswith(
        f"{len(links)} نتیجه".translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
    )


def test_screenshot_of_the_persian_issue_page(tab, site_url: str, tmp_path: Path) -> None:
    """A picture to look at (the report describes it); here only that it is made."""
    tab.goto(f"{site_url}_site/fa/2020-03/index.html")
    tab.wait_for_load_state("networkidle")
    shot = tmp_path / "fa-issue.png"
    tab.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_a_persian_edition_comes_and_goes_with_its_translations(demo: Path) -> None:
    from masthead.build import build

    root = demo
    build(root)
    site = root / "_site"
    assert (site / "fa" / "index.html").is_file()
    for path in (root / "issues" / "2020-03").glob("*.fa.md"):
        path.unlink()
    build(root)
    assert not (site / "fa").exists() or not any(
        (site / "fa" / name).exists() for name in ("index.html", "feed.xml", "search", "pagefind")
    )
    home = _page(site / "index.html")
    assert not home.cssselect(".lang-switch") and not home.cssselect("link[hreflang]")
    lead = _page(site / "2020-03" / "lead" / "index.html")
    assert not lead.cssselect(".lang-switch")
    assert "fa/" not in (site / "sitemap.xml").read_text("utf-8")


def test_persian_attribution_uses_the_persian_comma(built_demo: Path) -> None:
    """Regression: the attribution line joined outlet and date with a Latin comma."""
    page = (built_demo / "_site" / "fa" / "2020-03" / "lead" / "index.html").read_text("utf-8")
    line = re.search(r'<p class="attribution">(.*?)</p>', page, re.S)
    assert line and "</cite>، <time" in line.group(1)
    assert "</cite>, <time" not in page


def test_terminal_search_in_the_persian_edition(built_demo: Path) -> None:
    from click.testing import CliRunner

    from masthead.cli import main

    result = CliRunner().invoke(main, ["search", str(built_demo), "رودخانه", "--lang", "fa"])
    assert result.exit_code == 0, result.output
    assert "_site/fa/2020-03/lead/index.html" in result.output
    english = CliRunner().invoke(main, ["search", str(built_demo), "رودخانه"])
    assert "No item holds" in english.output, "the main edition has no Persian text to find"
