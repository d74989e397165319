"""The site in real headless Chromium: axe-core (WCAG 2.2 AA), search, file:// and sub-path
use, phone layout, and hostile content that must run nothing.

Needs Debian's ``chromium`` and npm's ``axe-core`` (``.ci/run`` installs both); Playwright
drives the system Chromium (``playwright install`` is never run)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from browser import ARGS, CHROMIUM, WCAG_22_AA, missing_tool, run_axe
from conftest import make_publication
from masthead.build import build
from test_web_security import EVIL_SVG, HOSTILE_ITEM

AXE_TAGS = WCAG_22_AA
PAGES = [
    "index.html",
    "2020-03/index.html",
    "2020-03/lead/index.html",
    "2020-03/letter-to-the-council/index.html",
    "2020-03/river-report/index.html",
    "publisher/index.html",
    "search/index.html?q=footbridge",
]

if not CHROMIUM.exists():
    missing_tool(f"{CHROMIUM} is not installed (apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(folder: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context()
    tab = context.new_page()
    tab.dialogs = []
    tab.on("dialog", lambda d: (tab.dialogs.append(d.message), d.dismiss()))
    yield tab
    context.close()


@pytest.fixture(scope="module")
def demo_url(built_demo: Path) -> Iterator[str]:
    """The built demo's publication folder served on 127.0.0.1: the site sits at /_site/,
    a sub-path, as it would on a host that serves it below the domain's root."""
    yield from _serve(built_demo)


def _axe(page) -> list[dict]:
    return run_axe(page, AXE_TAGS)


def _follow(page, selector: str, url: str) -> None:
    """Click the link at ``selector`` and wait until the page at ``url`` (a glob) has loaded:
    ``click`` returns once the navigation has started, before the new page is there."""
    page.click(selector)
    page.wait_for_url(url)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("path", PAGES)
def test_axe_finds_no_wcag_violation(page, demo_url: str, path: str, scheme: str) -> None:
    page.emulate_media(color_scheme=scheme)
    page.goto(f"{demo_url}_site/{path}")
    if "search" in path:
        page.wait_for_selector("#mh-search-results li")
    assert _axe(page) == []


def test_search_finds_items_in_the_browser(page, demo_url: str) -> None:
    page.goto(f"{demo_url}_site/search/index.html")
    page.fill("#mh-search-q", "kingfishers")
    page.click("#mh-search button")
    page.wait_for_selector("#mh-search-results li")
    results = page.eval_on_selector_all("#mh-search-results li a", "els => els.map(a => a.href)")
    assert results == [f"{demo_url}_site/2020-03/river-report/index.html"]
    assert page.inner_text("#mh-search-status") == "1 result(s)"
    meta = page.inner_text("#mh-search-results .meta")
    assert meta == "Volume 3 Number 45, March 2020 · in print: pages 2–4"
    assert page.inner_text("#mh-search-results mark").lower().startswith("kingfisher")
    _follow(page, "#mh-search-results li a", results[0])
    assert page.inner_text("h1") == "The State of the Lower Valley River, 2019"
    assert page.dialogs == []


def test_site_works_from_a_local_folder(page, built_demo: Path) -> None:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto((built_demo / "_site" / "index.html").as_uri())
    _follow(page, "ul.issue-list a", "**/_site/2020-03/index.html")
    assert page.url.endswith("/_site/2020-03/index.html")
    _follow(page, "#mh-t-lead a", "**/_site/2020-03/lead/index.html")
    assert page.url.endswith("/_site/2020-03/lead/index.html")
    # the stylesheet and the image load from the folder
    assert page.evaluate("getComputedStyle(document.querySelector('.site-header')).display") == (
        "flex"
    )
    # the image is loading="lazy": bring it into view and wait until it has loaded
    page.locator("figure img").scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector('figure img').complete")
    assert page.evaluate("document.querySelector('figure img').naturalWidth") > 0
    _follow(page, 'a[rel="next"]', "**/_site/2020-03/letter-to-the-council/index.html")
    assert page.inner_text("h1") == "Letter to the Town Council on the footbridge"
    _follow(page, "nav.site-nav >> text=About the publisher", "**/_site/publisher/index.html")
    assert page.url.endswith("/_site/publisher/index.html")
    assert errors == []


def test_phone_layout_never_scrolls_sideways(browser, demo_url: str) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, device_scale_factor=2)
    try:
        tab = context.new_page()
        for path in PAGES[:6]:
            tab.goto(f"{demo_url}_site/{path}")
            width = tab.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, f"{path} is {width}px wide"
    finally:
        context.close()


def test_print_stylesheet_hides_navigation(page, demo_url: str) -> None:
    page.goto(f"{demo_url}_site/2020-03/index.html")
    page.emulate_media(media="print")
    assert page.evaluate("getComputedStyle(document.querySelector('.site-header')).display") == (
        "none"
    )
    assert page.evaluate("getComputedStyle(document.querySelector('main')).display") == "block"


@pytest.fixture(scope="module")
def hostile_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = make_publication(
        tmp_path_factory.mktemp("hostile-browser") / "pub", items={"evil.md": HOSTILE_ITEM}
    )
    (root / "issues" / "2020-03" / "evil.svg").write_text(EVIL_SVG, "utf-8")
    build(root)
    yield from _serve(root / "_site")


@pytest.mark.parametrize(
    "path",
    [
        "index.html",
        "2020-03/index.html",
        "2020-03/evil/index.html",
        "2020-03/evil.svg",
        "search/index.html?q=alert",
    ],
)
def test_hostile_content_runs_nothing(page, hostile_url: str, path: str) -> None:
    page.goto(hostile_url + path)
    page.wait_for_load_state("networkidle")
    if "search" in path:
        page.wait_for_selector("#mh-search-results li")
    # what a reader's mouse and keyboard would do to every element (links are not followed)
    page.evaluate(
        """() => document.querySelectorAll('body *').forEach(el => {
            for (const type of ['mouseover', 'mouseenter', 'focus', 'load', 'error'])
                el.dispatchEvent(new Event(type));
        })"""
    )
    assert page.dialogs == []
    # nothing from the content became an element with a handler
    handlers = page.evaluate(
        """() => [...document.querySelectorAll('*')].flatMap(el =>
              [...el.attributes].filter(a => a.name.startsWith('on')).map(a => a.name))"""
    )
    assert handlers == []
