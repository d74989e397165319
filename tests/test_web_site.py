"""The web edition of the demo: pages, links, manifest, metadata — parsed, not grepped."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit
from xml.etree import ElementTree as ET

import lxml.html
import pytest

from conftest import make_publication, write_item
from masthead.build import build
from masthead.errors import RenderError

ITEMS = [
    "lead",
    "letter-to-the-council",
    "river-report",
    "library-hours",
    "spring-cleanup",
    "choir-rehearsals",
    "seed-swap",
]


def page(path: Path) -> lxml.html.HtmlElement:
    return lxml.html.fromstring(path.read_bytes())


def text(el: lxml.html.HtmlElement) -> str:
    return re.sub(r"\s+", " ", el.text_content()).strip()


def manifest(root: Path) -> dict:
    return json.loads((root / "_site" / "manifest.json").read_text("utf-8"))


def html_pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "pagefind" not in p.parts)


def test_the_site_has_every_page(built_demo: Path) -> None:
    site = built_demo / "_site"
    for rel in [
        "index.html",
        "2020-03/index.html",
        *(f"2020-03/{slug}/index.html" for slug in ITEMS),
        "publisher/index.html",
        "search/index.html",
        "feed.xml",
        "feed.json",
        "sitemap.xml",
        "static/masthead.css",
        "static/search.js",
        "2020-03/river.svg",
        "2020-03/search.json",
        "pagefind/part-000/pagefind.js",
    ]:
        assert (site / rel).is_file(), rel


def test_manifest_gives_html_paths_of_issues_and_items(built_demo: Path) -> None:
    entry = manifest(built_demo)["issues"][0]
    assert entry["html"] == "2020-03/index.html"
    assert [i["html"] for i in entry["items"]] == [f"2020-03/{s}/index.html" for s in ITEMS]
    for path in [entry["html"], *(i["html"] for i in entry["items"])]:
        assert (built_demo / "_site" / path).is_file()
    assert not any(key.startswith("_") for key in entry)  # private build data stays private


def test_issue_page_has_masthead_contents_items_in_print_order_and_pdf(built_demo: Path) -> None:
    entry = manifest(built_demo)["issues"][0]
    doc = page(built_demo / "_site" / "2020-03" / "index.html")
    assert text(doc.cssselect("h1")[0]) == "Riverside Bulletin"
    assert "Volume 3 Number 45 · March 2020" in text(doc.cssselect(".masthead")[0])
    contents = doc.cssselect("nav.contents li")
    assert [li.cssselect("a")[0].get("href") for li in contents] == [f"#{s}" for s in ITEMS]
    articles = doc.cssselect("main article.item")
    assert [a.get("id") for a in articles] == ITEMS
    for li, art, item in zip(contents, articles, entry["items"], strict=True):
        first, last = item["pages"]
        expected = f"in print: page {first}" if first == last else f"in print: pages {first}–{last}"
        assert text(li.cssselect(".in-print")[0]) == expected
        assert text(art.cssselect(".item-foot .in-print")[0]) == expected
        assert text(art.cssselect("h2")[0]) == item["title"]
        assert art.cssselect("h2 a")[0].get("href") == f"{item['slug']}/index.html"
    pdf = doc.cssselect("p.pdf a")[0]
    assert pdf.get("href") == Path(entry["pdf"]).name
    kb = round(entry["pdf_bytes"] / 1024)
    assert text(pdf) == f"Download the print edition (PDF, {kb} KB, {entry['page_count']} pages)"


def test_reprint_page_has_attribution_and_source_link(built_demo: Path) -> None:
    doc = page(built_demo / "_site" / "2020-03" / "river-report" / "index.html")
    article = doc.cssselect("main article")[0]
    assert text(article.cssselect("h1")[0]) == "The State of the Lower Valley River, 2019"
    assert text(article.cssselect(".kind")[0]) == "Reprint"
    assert text(article.cssselect(".byline")[0]) == "By Dr. Amina Farouk and Peter Novak"
    attribution = article.cssselect(".attribution")[0]
    assert text(attribution) == (
        "Reprinted from Lower Valley Naturalists' Journal, January 15, 2020."
    )
    assert attribution.cssselect("time")[0].get("datetime") == "2020-01-15"
    source = article.cssselect(".source-link a")[0]
    assert source.get("href") == "https://naturalists.example.net/journal/2019/river-state"
    # body headings sit under the page's h1 without a gap
    assert [h.tag for h in article.cssselect("h1, h2, h3, h4")][:2] == ["h1", "h2"]


def test_excerpt_page_links_to_the_full_article(built_demo: Path) -> None:
    doc = page(built_demo / "_site" / "2020-03" / "library-hours" / "index.html")
    assert text(doc.cssselect(".attribution")[0]).startswith("An excerpt from Riverside Town News")
    link = doc.cssselect(".source-link")[0]
    assert text(link).startswith("Link to the source for full article:")


def test_letter_page_has_date_addressee_salutation_and_signature(built_demo: Path) -> None:
    doc = page(built_demo / "_site" / "2020-03" / "letter-to-the-council" / "index.html")
    article = doc.cssselect("main article")[0]
    assert article.cssselect(".letter-date time")[0].get("datetime") == "2020-02-25"
    addressee = [t.strip() for t in article.cssselect(".addressee")[0].itertext()]
    assert [t for t in addressee if t] == [
        "To:",
        "Ms. Jane Doe",
        "Chair, Riverside Town Council",
        "1 Market Square",
        "Riverside 12345",
    ]
    assert text(article.cssselect(".salutation")[0]) == "Dear Ms. Doe,"
    signature = [t.strip() for t in article.cssselect(".signature")[0].itertext()]
    assert signature == ["Sincerely,", "Tom Okafor", "Chair, Riverside Community Association"]
    # the salutation comes before the body, the signature after it
    order = [el.get("class") for el in article.iterchildren() if el.get("class")]
    assert order.index("salutation") < order.index("signature")


def test_item_image_is_copied_with_alt_text_and_caption(built_demo: Path) -> None:
    site = built_demo / "_site"
    doc = page(site / "2020-03" / "lead" / "index.html")
    figure = doc.cssselect("main article figure")[0]
    img = figure.cssselect("img")[0]
    assert img.get("src") == "../river.svg"
    assert img.get("alt").startswith("A drawing of the river winding between green hills")
    assert text(figure.cssselect("figcaption")[0]).startswith("The river below the old mill")
    source = ET.parse(built_demo / "issues" / "2020-03" / "river.svg").getroot()
    copied = ET.parse(site / "2020-03" / "river.svg").getroot()  # the same drawing
    assert [(e.tag, e.attrib, e.text) for e in copied.iter()] == [
        (e.tag, e.attrib, e.text) for e in source.iter()
    ]


def test_item_pages_link_to_previous_and_next_in_print_order(built_demo: Path) -> None:
    site = built_demo / "_site" / "2020-03"
    for n, slug in enumerate(ITEMS):
        doc = page(site / slug / "index.html")
        prev = doc.cssselect('a[rel="prev"]')
        nxt = doc.cssselect('a[rel="next"]')
        assert [a.get("href") for a in prev] == ([f"../{ITEMS[n - 1]}/index.html"] if n else [])
        expected = [f"../{ITEMS[n + 1]}/index.html"] if n + 1 < len(ITEMS) else []
        assert [a.get("href") for a in nxt] == expected
        crumbs = [a.get("href") for a in doc.cssselect("nav.breadcrumb a")]
        assert crumbs == ["../../index.html", "../index.html"]


def test_every_local_link_resolves_and_none_is_root_relative(built_demo: Path) -> None:
    """Relative links only: the site works from a sub-path and from a local folder."""
    site = built_demo / "_site"
    checked = 0
    for path in html_pages(site):
        doc = page(path)
        for el, attr, url, _ in doc.iterlinks():
            if el.tag == "meta" or (el.tag == "link" and el.get("rel") == "canonical"):
                continue
            parts = urlsplit(url)
            if parts.scheme in ("http", "https", "mailto", "tel"):
                continue
            assert not url.startswith("/"), f"{path}: root-relative {attr}={url}"
            assert not parts.scheme, f"{path}: {attr}={url}"
            if not parts.path:
                continue
            target = (path.parent / unquote(parts.path)).resolve()
            assert target.is_file(), f"{path.relative_to(site)}: {url} does not exist"
            assert target.is_relative_to(site.resolve())
            checked += 1
    assert checked > 100


def test_every_page_has_a_strict_csp_and_no_inline_script(built_demo: Path) -> None:
    site = built_demo / "_site"
    for path in html_pages(site):
        doc = page(path)
        persian = path.relative_to(site).parts[0] == "fa"  # the Persian sub-site
        assert (doc.get("lang"), doc.get("dir")) == (("fa", "rtl") if persian else ("en", "ltr"))
        csp = doc.cssselect('meta[http-equiv="Content-Security-Policy"]')[0].get("content")
        assert csp.startswith("default-src 'self'; script-src 'self'")
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp.replace("wasm-unsafe", "")
        for script in doc.cssselect("script"):
            if script.get("type") == "application/ld+json":
                json.loads(script.text)
            else:
                assert script.get("src", "").endswith("static/search.js"), path
                assert not (script.text or "").strip()


def test_canonical_and_social_cards_use_base_url(built_demo: Path) -> None:
    doc = page(built_demo / "_site" / "2020-03" / "lead" / "index.html")
    base = "https://bulletin.example.org/"
    assert doc.cssselect('link[rel="canonical"]')[0].get("href") == f"{base}2020-03/lead/"
    og = {m.get("property"): m.get("content") for m in doc.cssselect("meta[property]")}
    assert og["og:url"] == f"{base}2020-03/lead/"
    assert og["og:type"] == "article"
    assert og["og:title"].startswith("A new flood plan for the lower valley")
    assert og["og:description"].startswith("The town's draft flood plan")
    twitter = {m.get("name"): m.get("content") for m in doc.cssselect('meta[name^="twitter:"]')}
    assert twitter["twitter:card"] == "summary"  # an SVG is no card image


def _jsonld(path: Path) -> dict:
    return json.loads(page(path).cssselect('script[type="application/ld+json"]')[0].text)


def test_json_ld_describes_issue_and_articles(built_demo: Path) -> None:
    site = built_demo / "_site"
    issue = _jsonld(site / "2020-03" / "index.html")
    assert issue["@type"] == "PublicationIssue"
    assert issue["issueNumber"] == "45"
    assert issue["isPartOf"]["isPartOf"]["@type"] == "Periodical"
    assert issue["isPartOf"]["isPartOf"]["name"] == "Riverside Bulletin"
    assert [a["@type"] for a in issue["hasPart"]] == ["NewsArticle"] * len(ITEMS)
    reprint = _jsonld(site / "2020-03" / "river-report" / "index.html")
    assert reprint["isBasedOn"]["url"] == "https://naturalists.example.net/journal/2019/river-state"
    assert reprint["author"][0] == {"@type": "Person", "name": "Dr. Amina Farouk"}
    excerpt = _jsonld(site / "2020-03" / "library-hours" / "index.html")
    assert excerpt["isBasedOn"]["url"] == "https://townnews.example.com/library-reading-room"
    assert "isBasedOn" not in _jsonld(site / "2020-03" / "seed-swap" / "index.html")
    assert _jsonld(site / "index.html")["@type"] == "Periodical"


def test_home_page_shows_latest_issue_and_its_contents(built_demo: Path) -> None:
    doc = page(built_demo / "_site" / "index.html")
    latest = doc.cssselect("section.latest")[0]
    assert "Volume 3 Number 45, March 2020" in text(latest.cssselect("h2")[0])
    links = [a.get("href") for a in latest.cssselect("ol.contents-list a")]
    assert links == [f"2020-03/{s}/index.html" for s in ITEMS]
    leads = latest.cssselect("article.lead")
    assert text(leads[0].cssselect("h3")[0]) == "A new flood plan for the lower valley"
    assert leads[0].cssselect("img")[0].get("src") == "2020-03/river.svg"


def test_publisher_page(built_demo: Path) -> None:
    doc = page(built_demo / "_site" / "publisher" / "index.html")
    main = doc.cssselect("main")[0]
    assert "founded in 1998" in text(main)
    assert "P.O. Box 14145/119" in text(main.cssselect("address")[0])
    mails = [a.get("href") for a in main.cssselect('address a[href^="mailto:"]')]
    assert mails == ["mailto:info@example.org", "mailto:editor@example.org"]
    assert main.cssselect('address a[href="https://example.org"]')


def _add_issue(root: Path, slug: str, volume: int, number: int, day: str, title: str) -> None:
    folder = root / "issues" / slug
    folder.mkdir(parents=True)
    (folder / "issue.toml").write_text(
        f"volume = {volume}\nnumber = {number}\ndate = {day}\n", "utf-8"
    )
    write_item(folder, "story.md", f"title: {title}")


def test_archive_is_grouped_by_volume_newest_first(tmp_path: Path) -> None:
    root = make_publication(tmp_path / "pub")  # 2020-03: volume 1 number 2
    _add_issue(root, "2019-12", 1, 1, "2019-12-01", "First")
    _add_issue(root, "2021-01", 2, 3, "2021-01-01", "Third")
    _add_issue(root, "2021-02", 2, 4, "2021-02-01", "Fourth")
    build(root)
    doc = page(root / "_site" / "index.html")
    archive = doc.cssselect("section.archive")[0]
    assert [text(h) for h in archive.cssselect("h3")] == ["Volume 2", "Volume 1"]
    hrefs = [a.get("href") for a in archive.cssselect("ul.issue-list a")]
    assert hrefs == [f"{s}/index.html" for s in ("2021-02", "2021-01", "2020-03", "2019-12")]
    assert "Fourth" in text(doc.cssselect("section.latest")[0])


def test_right_to_left_language_sets_dir_on_html(tmp_path: Path) -> None:
    root = make_publication(tmp_path / "pub")
    toml = root / "masthead.toml"
    toml.write_text(toml.read_text("utf-8").replace("tagline", 'language = "fa"\ntagline', 1))
    build(root)
    for rel in ("index.html", "2020-03/index.html", "2020-03/a/index.html"):
        doc = page(root / "_site" / rel)
        assert (doc.get("lang"), doc.get("dir")) == ("fa", "rtl")


def test_issue_folder_may_not_take_a_name_the_site_uses(tmp_path: Path) -> None:
    root = make_publication(tmp_path / "pub")
    (root / "issues" / "2020-03").rename(root / "issues" / "search")
    with pytest.raises(RenderError, match="a name the web site uses itself") as caught:
        build(root)
    assert "rename the folder" in str(caught.value)
    assert not (root / "_site").exists()
