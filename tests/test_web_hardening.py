"""What `masthead serve` sends around files: the policies every SVG and page carries, links
in an issue folder that the editor's app refuses to follow, a redirect that never names the
request's Host, probes that do not show the database's error text."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from conftest import sqlite_only
from editor_kit import log_in, png
from masthead.build import build
from masthead.store import dispose_engines
from masthead.web import create_app

SVG_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    dispose_engines()


@pytest.fixture
def client(site_root: Path):
    with TestClient(create_app(site_root), base_url="https://bulletin.example.org") as c:
        yield c


@pytest.fixture
def editor(client: TestClient) -> TestClient:
    assert log_in(client).status_code == 200
    return client


# ---- policies ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/2020-03/river.svg", "/static/favicon.svg", "/feed.xml"])
def test_svg_and_other_files_are_served_sandboxed(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == SVG_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/", "/2020-03/", "/2020-03/lead/", "/search/"])
def test_pages_carry_a_policy_header(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'self'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_scripts_are_not_sandboxed(client: TestClient) -> None:
    """Pagefind runs its search in a worker, whose policy is its script's own."""
    response = client.get("/static/search.js")
    assert response.status_code == 200
    assert "sandbox" not in response.headers.get("content-security-policy", "")


def test_admin_files_are_served_sandboxed(editor: TestClient, site_root: Path) -> None:
    (site_root / "issues/2020-03/photo.png").write_bytes(png())
    response = editor.get("/admin/issues/2020-03/files/photo.png")
    assert response.status_code == 200 and response.content == png()
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-security-policy"] == SVG_POLICY


# ---- links in an issue folder -----------------------------------------------------------


def _secret(root: Path) -> bytes:
    return (root / ".masthead" / "secret.key").read_bytes()


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("key.png", "../../.masthead/secret.key"),  # relative, to the signing secret
        ("abs.png", "{root}/.masthead/secret.key"),  # absolute
        ("passwd.png", "/etc/passwd"),
        ("folder.png", "../../.masthead"),  # a folder
        ("loop.png", "loop.png"),  # a link to itself
        ("dangling.png", "../../nothing-here.png"),
    ],
)
def test_files_route_does_not_follow_links(
    editor: TestClient, site_root: Path, name: str, target: str
) -> None:
    link = site_root / "issues/2020-03" / name
    os.symlink(target.format(root=site_root), link)
    response = editor.get(f"/admin/issues/2020-03/files/{name}")
    assert response.status_code == 404
    assert _secret(site_root) not in response.content
    assert b"root:" not in response.content


def test_files_route_refuses_an_issue_folder_that_is_a_link(
    editor: TestClient, site_root: Path
) -> None:
    """A hardlink-free way out: the file is real, but its folder is a link elsewhere."""
    elsewhere = site_root.parent / "elsewhere"
    shutil.copytree(site_root / "issues/2020-03", elsewhere)
    (elsewhere / "private.png").write_bytes(png(7, 7))
    os.symlink(elsewhere, site_root / "issues/2020-09")
    response = editor.get("/admin/issues/2020-09/files/private.png")
    assert response.status_code in (400, 404)
    assert png(7, 7) not in response.content
    page = editor.get("/admin/issues/2020-09/items/lead")
    assert page.status_code in (400, 404)
    assert "not follow links" in page.text or page.status_code == 404


def test_item_that_is_a_link_is_neither_shown_nor_written(
    editor: TestClient, site_root: Path
) -> None:
    secret = _secret(site_root)
    folder = site_root / "issues/2020-03"
    os.symlink("../../.masthead/secret.key", folder / "notes.md")
    page = editor.get("/admin/issues/2020-03/items/notes")
    assert page.status_code == 400
    assert "symbolic link" in page.text
    assert secret.hex() not in page.text and secret.decode("latin-1") not in page.text
    issue = editor.get("/admin/issues/2020-03")
    assert issue.status_code == 200 and secret.decode("latin-1") not in issue.text


# ---- the folder redirect ----------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "bulletin.example.org", "x:1@evil.example"])
def test_folder_redirect_is_relative(client: TestClient, host: str) -> None:
    response = client.get("/2020-03", headers={"host": host}, follow_redirects=False)
    assert response.status_code in (301, 302, 307, 308)
    location = response.headers["location"]
    assert location == "2020-03/"
    assert "evil" not in location and "//" not in location


def test_folder_redirect_under_a_prefix_is_relative(site_root: Path) -> None:
    toml = site_root / "masthead.toml"
    toml.write_text(
        toml.read_text("utf-8").replace(
            'base_url = "https://bulletin.example.org/"',
            'base_url = "https://bulletin.example.org/bulletin/"',
        ),
        "utf-8",
    )
    build(site_root)
    with TestClient(create_app(site_root), base_url="https://bulletin.example.org") as c:
        response = c.get("/bulletin/2020-03?x=1", headers={"host": "evil"}, follow_redirects=False)
        assert response.headers["location"] == "2020-03/?x=1"
        followed = c.get("/bulletin/2020-03")
        assert followed.status_code == 200 and followed.url.path == "/bulletin/2020-03/"


# ---- probes -----------------------------------------------------------------------------


@sqlite_only  # breaks the SQLite file; the PostgreSQL run has none
def test_probes_do_not_show_the_database_error(site_root: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    app = create_app(site_root)
    with TestClient(app) as c:
        assert c.get("/healthz").text == "ok"
        store = app.state.endpoints.store
        store.engine.dispose()
        (site_root / ".masthead" / "masthead.db").write_bytes(b"not a database " * 1000)
        for probe in ("/healthz", "/readyz"):
            response = c.get(probe)
            assert response.status_code == 503
            assert response.text == "database unavailable"
    assert "not a database" in caplog.text  # the operator's log has the reason


# ---- logins -----------------------------------------------------------------------------


def test_failed_logins_are_capped_across_addresses(site_root: Path) -> None:
    """Each address stays under its own limit; together they hit the global one."""
    from editor_kit import PASSWORD, csrf_of

    app = create_app(site_root)
    statuses = []
    for n in range(30):
        with TestClient(app, client=(f"10.0.{n // 250}.{n % 250 + 1}", 40000)) as c:
            page = c.get("/admin/login")
            response = c.post(
                "/admin/login", data={"csrf": csrf_of(page.text), "password": f"guess {n}"}
            )
            statuses.append(response.status_code)
    assert statuses[:20] == [401] * 20
    assert statuses[-5:] == [429] * 5
    # the right password waits too while the cap is reached (a guess would be no test)
    with TestClient(app, client=("10.9.9.9", 40000)) as c:
        page = c.get("/admin/login")
        response = c.post("/admin/login", data={"csrf": csrf_of(page.text), "password": PASSWORD})
        assert response.status_code == 429


# ---- the Markdown preview ---------------------------------------------------------------


def test_markdown_preview_refuses_a_huge_text(editor: TestClient) -> None:
    from editor_kit import csrf_of

    token = csrf_of(editor.get("/admin/").text)
    response = editor.post(
        "/admin/markdown-preview",
        data={"body": "[" * 600_000, "slug": "2020-03"},
        headers={"x-csrf-token": token},
    )
    assert response.status_code == 413
    assert "too long to preview" in response.text
    small = editor.post(
        "/admin/markdown-preview",
        data={"body": "*hello*", "slug": "2020-03"},
        headers={"x-csrf-token": token},
    )
    assert small.status_code == 200 and "<em>hello</em>" in small.text


async def _call(app, method: str, path: str, headers=(), body: bytes = b""):  # type: ignore[no-untyped-def]
    """One request straight to the ASGI app, on the caller's event loop."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 40000),
        "server": ("t", 80),
    }
    sent = False
    out: dict = {"body": b"", "headers": []}

    async def receive():  # type: ignore[no-untyped-def]
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):  # type: ignore[no-untyped-def]
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = [(k.decode(), v.decode()) for k, v in message["headers"]]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return out


def test_markdown_preview_does_not_block_other_requests(site_root: Path) -> None:
    """A slow parse runs in a thread: a probe sent meanwhile answers at once."""
    import time
    from urllib.parse import urlencode

    import anyio

    from editor_kit import PASSWORD, csrf_of

    app = create_app(site_root)
    form = "application/x-www-form-urlencoded"

    async def scenario() -> tuple[float, float]:
        page = await _call(app, "GET", "/admin/login")
        cookie = next(v for k, v in page["headers"] if k == "set-cookie").split(";")[0]
        login = urlencode({"csrf": csrf_of(page["body"].decode()), "password": PASSWORD})
        done = await _call(
            app,
            "POST",
            "/admin/login",
            [("cookie", cookie), ("content-type", form)],
            login.encode(),
        )
        cookie = next(v for k, v in done["headers"] if k == "set-cookie").split(";")[0]
        token = csrf_of((await _call(app, "GET", "/admin/", [("cookie", cookie)]))["body"].decode())
        body = urlencode({"body": "[" * 190_000, "slug": "2020-03"}).encode()
        timings: dict[str, float] = {}

        start = time.perf_counter()

        async def preview() -> None:
            headers = [("cookie", cookie), ("x-csrf-token", token), ("content-type", form)]
            answer = await _call(app, "POST", "/admin/markdown-preview", headers, body)
            assert answer["status"] == 200
            timings["preview"] = time.perf_counter() - start

        async def probe() -> None:
            await anyio.sleep(0.1)
            assert (await _call(app, "GET", "/healthz"))["status"] == 200
            timings["probe"] = time.perf_counter() - start  # answered, counted from the start

        async with anyio.create_task_group() as tg:
            tg.start_soon(preview)
            tg.start_soon(probe)
        return timings["preview"], timings["probe"]

    preview, probe = anyio.run(scenario)
    assert preview > 0.4, "the parse is too fast to show anything on this machine"
    assert probe < preview / 2  # the probe did not wait for the parse


# ---- the confirmation mail --------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Win a prize at https://evil.example/claim now",
        "Dear friend, visit evil.example and www.evil.example",
        "=?utf-8?q?Admin?= <admin@evil.example>",
        "x" * 200,
    ],
)
def test_confirmation_mail_carries_no_name_of_the_signer(
    site_root: Path, confirm_sink, name: str
) -> None:
    from conftest import point_smtp_at

    point_smtp_at(site_root, confirm_sink.port)
    with TestClient(create_app(site_root), base_url="https://bulletin.example.org") as c:
        answer = c.post("/subscribe", data={"email": "victim@example.org", "name": name})
        assert answer.status_code == 200
    assert len(confirm_sink.received) == 1
    raw = confirm_sink.received[0][2].as_string()
    message = confirm_sink.received[0][2]
    assert "evil" not in raw and "prize" not in raw and "x" * 50 not in raw
    assert message["To"] == "victim@example.org"
    assert "https://bulletin.example.org/confirm/" in message.get_content()


# ---- the sign-up form's timing ----------------------------------------------------------


class _SlowSink:
    """An SMTP server that takes 200 ms to accept each message, like a busy relay."""

    def __init__(self) -> None:
        self.received: list[str] = []

    async def handle_DATA(self, server: object, session: object, envelope) -> str:  # type: ignore[no-untyped-def]
        import asyncio

        await asyncio.sleep(0.2)
        self.received.extend(envelope.rcpt_tos)
        return "250 OK"


def test_sign_up_answers_new_and_known_addresses_in_the_same_time(site_root: Path) -> None:
    import statistics
    import threading
    import time

    import uvicorn
    from aiosmtpd.controller import Controller

    import patient_http as http
    from conftest import free_port, point_smtp_at
    from masthead.content import load_publication
    from masthead.store import open_store
    from masthead.store import subscriber_list as subs

    sink = _SlowSink()
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    point_smtp_at(site_root, smtp_port)
    store = open_store(load_publication(site_root))
    known = subs.add(store, "known@example.org", source="import").subscriber
    subs.confirm(store, known.id, ip=None)
    app = create_app(site_root, subscribe_burst=100, subscribe_per_minute=1000)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        timings: dict[str, list[float]] = {"new": [], "known": []}
        with http.Client(base_url=f"http://127.0.0.1:{port}") as client:  # one kept-alive
            for n in range(6):
                for kind, email in (("new", f"new{n}@example.org"), ("known", "known@example.org")):
                    start = time.perf_counter()
                    answer = client.post("/subscribe", data={"email": email})
                    timings[kind].append(time.perf_counter() - start)
                    assert answer.status_code == 200 and "we sent a link" in answer.text
        new, old = statistics.median(timings["new"]), statistics.median(timings["known"])
        assert new < 0.15 and old < 0.15, timings  # neither waits for the 200 ms relay
        assert abs(new - old) < 0.1, timings
        deadline = time.monotonic() + 20
        while len(sink.received) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(sink.received) == sorted(f"new{n}@example.org" for n in range(6))
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        controller.stop()


def test_issue_toml_that_is_a_link_is_not_read(editor: TestClient, site_root: Path) -> None:
    secret = _secret(site_root)
    toml = site_root / "issues/2020-03/issue.toml"
    toml.unlink()
    os.symlink("../../.masthead/secret.key", toml)
    page = editor.get("/admin/issues/2020-03")
    assert secret.decode("latin-1") not in page.text
    # the loader refuses the link too (it read the key and reported a byte of it)
    assert "symbolic link" in page.text and "0x" not in page.text


def test_restore_does_not_follow_a_trash_link(editor: TestClient, site_root: Path) -> None:
    from editor_kit import csrf_of

    outside = site_root.parent / "20200101-000000-0-stolen"
    outside.mkdir()
    (outside / "stolen.md").write_text("---\ntitle: Stolen\n---\n\nx\n", "utf-8")
    trash = site_root / "issues/2020-03/.trash"
    os.symlink(outside.parent, trash)
    token = csrf_of(editor.get("/admin/issues/2020-03").text)
    response = editor.post(
        "/admin/issues/2020-03/restore",
        data={"trash": "20200101-000000-0-stolen", "csrf": token},
    )
    assert response.status_code == 400
    assert not (site_root / "issues/2020-03/stolen.md").exists()
