"""The site as `masthead serve` sends it (with its Content-Security-Policy headers), in real
headless Chromium: an SVG opened by itself runs nothing, even one that was never cleaned,
and the search still works under the header policy."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from browser import ARGS, CHROMIUM, missing_tool
from conftest import copy_tree, free_port
from masthead.build import build
from masthead.store import dispose_engines
from masthead.web import create_app
from test_svg_clean import PAYLOADS, SVG

if not CHROMIUM.exists():
    missing_tool(f"{CHROMIUM} is not installed (apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")

RAW_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(\'raw-onload\')">'
    "<script>alert('raw-script'); fetch('/admin/subscribers/export.csv')</script>"
    '<a href="javascript:alert(\'raw-link\')"><rect width="100" height="100"/></a></svg>'
)
CLICKABLE = [name for name, payload in PAYLOADS.items() if "<a" in payload]


@pytest.fixture(scope="module")
def served(built_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    root = copy_tree(built_demo, tmp_path_factory.mktemp("served") / "demo")
    folder = root / "issues" / "2020-03"
    items = []
    for n, name in enumerate(CLICKABLE):
        (folder / f"payload{n}.svg").write_text(SVG.format(PAYLOADS[name]), "utf-8")
        items.append(f"![payload {n}](payload{n}.svg)")
    (folder / "payloads.md").write_text(
        "---\ntitle: Payloads\n---\n\n" + "\n\n".join(items) + "\n", "utf-8"
    )
    build(root)
    # one file that never went through the cleaning: only the header policy stands
    (root / "_site" / "2020-03" / "raw.svg").write_text(RAW_SVG, "utf-8")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(root), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        dispose_engines()


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
    tab.requests = []
    tab.on("dialog", lambda d: (tab.dialogs.append(d.message), d.dismiss()))
    tab.on("request", lambda r: tab.requests.append(r.url))
    yield tab
    context.close()


def test_an_uncleaned_svg_runs_nothing_under_the_policy(page, served: str) -> None:
    page.goto(served + "2020-03/raw.svg")
    page.wait_for_load_state("load")
    page.mouse.click(10, 10)
    page.wait_for_timeout(300)
    assert page.dialogs == []
    assert not any("/admin/" in url for url in page.requests)


@pytest.mark.parametrize("n", range(len(CLICKABLE)))
def test_a_cleaned_svg_link_runs_nothing_when_clicked(page, served: str, n: int) -> None:
    page.goto(f"{served}2020-03/payload{n}.svg")
    page.wait_for_load_state("load")
    page.mouse.click(5, 5)  # on the drawing the link (if any is left) wraps
    page.wait_for_timeout(300)
    assert page.dialogs == []
    assert page.url.startswith(served) or page.url.startswith("https://")


def test_search_works_under_the_header_policy(page, served: str) -> None:
    page.goto(served + "search/index.html")
    page.fill("#mh-search-q", "kingfishers")
    page.click("#mh-search button")
    page.wait_for_selector("#mh-search-results li")
    results = page.eval_on_selector_all("#mh-search-results li a", "els => els.map(a => a.href)")
    assert results == [f"{served}2020-03/river-report/index.html"]
