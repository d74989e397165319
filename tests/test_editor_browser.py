"""The editor's app end to end in real headless Chromium against a real server on 127.0.0.1:
log in, create an issue, add an item, reorder (keyboard and drag and drop), watch the print
preview's contents box change, send a test email to a real SMTP sink; axe-core on every page.

Needs Debian's ``chromium`` and npm's ``axe-core`` (``.ci/run`` installs both); Playwright
drives the system Chromium (``playwright install`` is never run)."""

from __future__ import annotations

import re
import socket
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from browser import ARGS, CHROMIUM, WCAG_22_AA, missing_tool, run_axe
from conftest import point_smtp_at
from editor_kit import PASSWORD, set_password
from masthead.store import dispose_engines

AXE_TAGS = [*WCAG_22_AA, "best-practice"]

if not CHROMIUM.exists():
    missing_tool(f"{CHROMIUM} is not installed (apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")


@pytest.fixture
def server(demo: Path) -> Iterator[tuple[str, Path]]:
    """``masthead serve``'s app under uvicorn in a thread, on a free port of 127.0.0.1.

    The socket is bound here (port 0) and handed to uvicorn, so no other test can take the
    port between picking it and listening on it."""
    import uvicorn

    from masthead.web import create_app

    set_password(demo)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(demo), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", demo
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        dispose_engines()


@pytest.fixture
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


def axe(page) -> list[dict]:
    return run_axe(page, AXE_TAGS)


def contents(page) -> list[str]:
    return [" ".join(li.split()) for li in page.locator("#contents li").all_inner_texts()]


def test_make_reorder_preview_and_test_send_in_the_browser(server, browser, confirm_sink) -> None:
    base, root = server
    point_smtp_at(root, confirm_sink.port)
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    checked: dict[str, list] = {}

    def check(name: str, tab=None) -> None:  # type: ignore[no-untyped-def]
        checked[name] = axe(tab or page)

    # Log in
    page.goto(f"{base}/admin/")
    assert page.url.endswith("/admin/login?next=/admin/")
    check("login")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin/")
    check("dashboard")

    # A new issue, with a new item
    page.click("text=New issue")
    page.wait_for_url(re.compile(r".*/admin/issues/[\w-]+$"))
    slug = page.url.rsplit("/", 1)[1]
    folder = root / "issues" / slug
    check("issue")
    page.fill("#new-title", "Flood defences")
    page.select_option("#new-kind", "article")
    page.click("text=Add item")
    page.wait_for_url(f"{base}/admin/issues/{slug}/items/flood-defences")
    check("item")

    # Live preview while typing, then save a long body
    body = "\n\n".join(
        [f"Paragraph {n} about the **river** and the new embankment. " * 12 for n in range(30)]
    )
    page.fill("#f-body", body)
    page.wait_for_function(
        "() => document.querySelector('#body-preview strong') !== null && "
        "document.querySelector('#body-preview').textContent.includes('Paragraph 29')"
    )
    page.fill("#f-authors", "Ada Lovelace")
    page.click("#item-form button[type=submit]")
    page.wait_for_selector("text=Saved flood-defences.md")
    text = (folder / "flood-defences.md").read_text("utf-8")
    assert "authors:\n- Ada Lovelace" in text and "Paragraph 29" in text

    # The print preview in a second tab
    preview = context.new_page()
    preview.goto(f"{base}/admin/issues/{slug}/print")
    before = contents(preview)
    assert before[0].startswith("Lead story p. 1") and before[1].startswith("Flood defences")
    assert preview.locator("#pages img").count() >= 2
    check("print", preview)

    # Reorder by keyboard: focus the new item's Up button and press Enter
    page.goto(f"{base}/admin/issues/{slug}")
    page.focus('button[aria-label="Move Flood defences up"]')
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.getElementById('order-status').textContent.includes('now number 1')"
    )
    order = tomllib.loads((folder / "issue.toml").read_text("utf-8"))["items"]
    assert order == ["flood-defences.md", "lead.md"]
    focused = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert focused == "Move Flood defences down"  # Up is disabled at the top: focus stays near

    # The preview tab notices by itself: the contents box now starts with the long item
    preview.wait_for_function(
        "() => document.querySelector('#contents li .t').textContent === 'Flood defences'",
        timeout=60000,
    )
    after = contents(preview)
    assert after[0].startswith("Flood defences p. 1–")
    lead_page = int(re.search(r"Lead story p\. (\d+)", after[1]).group(1))
    assert lead_page >= 2, after

    # Reorder by drag and drop: Lead story back above
    page.locator("#items li[data-name='lead.md'] .grip").drag_to(
        page.locator("#items li[data-name='flood-defences.md'] .title"),
        target_position={"x": 5, "y": 2},
    )
    page.wait_for_function(
        "() => document.querySelector('#items li').dataset.name === 'lead.md' && "
        "!document.getElementById('items').hasAttribute('aria-busy')"
    )
    deadline = time.monotonic() + 10
    while tomllib.loads((folder / "issue.toml").read_text("utf-8"))["items"][0] != "lead.md":
        assert time.monotonic() < deadline, "the dragged order was not saved"
        time.sleep(0.1)
    preview.wait_for_function(
        "() => document.querySelector('#contents li .t').textContent === 'Lead story'",
        timeout=60000,
    )

    # Build, then a test email to the SMTP sink
    page.goto(f"{base}/admin/issues/{slug}/send")
    check("send (not built)")
    page.click("text=Build editions")
    page.wait_for_selector(f"text=Built issue {slug}.")
    check("send")
    page.fill("#test-address", "editor@example.org")
    page.click("text=Send test email")
    page.wait_for_selector("text=Test email sent to editor@example.org")
    assert [rcpt for _, rcpt, _ in confirm_sink.received] == [["editor@example.org"]]
    message = confirm_sink.received[0][2]
    assert "Flood defences" in message.get_body(("plain",)).get_content()

    # The web edition the build made, linked from the issue page
    page.goto(f"{base}/admin/issues/{slug}")
    with page.expect_navigation():
        page.click("text=Web edition")
    assert "Flood defences" in page.content()

    # Subscribers pages
    page.goto(f"{base}/admin/subscribers")
    page.fill("#add-email", "ada@example.org")
    page.check("#add-confirmed")
    page.click("form[action='/admin/subscribers/add'] button")
    page.wait_for_selector("text=Added ada@example.org (active).")
    check("subscribers")
    page.click("text=ada@example.org >> nth=-1")
    page.wait_for_selector("text=Consent records")
    check("subscriber")
    csv_file = root.parent / "list.csv"
    csv_file.write_text("email,name\nbob@example.org,Bob\nnot-an-address,X\n", "utf-8")
    page.goto(f"{base}/admin/subscribers")
    page.set_input_files("#import-file", str(csv_file))
    page.check("#import-confirmed")
    page.click("form[action='/admin/subscribers/import'] button")
    page.wait_for_selector("text=Rows not imported")
    check("import report")
    page.goto(f"{base}/admin/")
    check("dashboard with data")

    assert errors == []  # no script error, no failed request so far

    # Two editors at once: the file changes on disk while the form is open
    page.goto(f"{base}/admin/issues/{slug}/items/lead")
    lead = folder / "lead.md"
    lead.write_text(lead.read_text("utf-8") + "\nChanged in a text editor.\n", "utf-8")
    page.fill("#f-body", "My version.")
    page.click("#item-form button[type=submit]")
    page.wait_for_selector("text=was changed by someone else")
    assert "Changed in a text editor." in page.locator("pre.theirs").inner_text()
    assert page.input_value("#f-body") == "My version."
    check("conflict")

    assert {name: v for name, v in checked.items() if v} == {}
    assert errors == [
        "Failed to load resource: the server responded with a status of 409 (Conflict)"
    ]
    context.close()


def test_phone_layout_never_scrolls_sideways(server, browser) -> None:
    base, _ = server
    context = browser.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    page.goto(f"{base}/admin/login")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin/")
    for path in [
        "",
        "issues/2020-03",
        "issues/2020-03/items/lead",
        "issues/2020-03/print",
        "issues/2020-03/send",
        "subscribers",
    ]:
        page.goto(f"{base}/admin/{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"/admin/{path} is {width}px wide"
    context.close()
