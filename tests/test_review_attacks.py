"""Review of issue 13's fixes: new variants of the attacks that still get through.

Each test reproduces one bypass found by attacking the merged fixes from outside; every
test here fails on the reviewed code (commit 3634bf8) and names the bypass in its
docstring. Attacks that were refused are listed in the review report, not here.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from conftest import sqlite_only
from editor_kit import log_in, png
from masthead.render.svg import clean_svg
from masthead.store import dispose_engines
from masthead.web import create_app

SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="50" height="50">{}</svg>'


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    dispose_engines()


# ---- SVGs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        '<rect width="9" height="9" style="background-image:'
        "image-set('https://evil.example/t.png' 1x)\"/>",
        "<rect style=\"mask-image:-webkit-image-set('https://evil.example/t.png' 1x)\"/>",
        '<style>svg{background-image:image-set("https://evil.example/t.png" 1x)}</style>',
        '<rect fill="image-set(&quot;https://evil.example/t.png&quot; 1x)"/>',
        # url( left open: CSS closes it at the end of the value; the check's regex needs ")"
        '<rect style="background-image:url(https://evil.example/t.png"/>',
        '<rect style="mask-image:url(&quot;https://evil.example/t.png&quot;"/>',
        "<style>svg{background-image:url(https://evil.example/t.png</style>",
        '<rect style="fill:url(#a) url(https://evil.example/t.png"/>',
        '<rect fill="url(https://evil.example/p.svg#p"/>',
    ],
)
def test_svg_css_fetches_a_remote_image(payload: str) -> None:
    """Bypass: CSS image-set("https://…") and an unclosed url(https://… survive clean_svg;
    Chromium fetched both when the cleaned SVG was opened without masthead serve's CSP."""
    cleaned = clean_svg(SVG.format(payload).encode())
    assert cleaned is not None
    assert b"evil.example" not in cleaned


@pytest.mark.parametrize(
    "href",
    ["%2e%2e/%2e%2e/admin/subscribers/export.csv", ".%2e/.%2E/admin/", "%2E./x.svg"],
)
def test_svg_link_with_percent_encoded_dot_segments_climbs_out(href: str) -> None:
    """Bypass: an <a> link of %2e%2e/ segments passes the 'relative path that stays
    inside' check (normpath sees no ..), but browsers resolve %2e%2e as .."""
    cleaned = clean_svg(SVG.format(f'<a href="{href}"><rect width="9" height="9"/></a>').encode())
    assert cleaned is not None
    assert b"href" not in cleaned


# ---- masthead serve ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/login/", "/admin/static", "/admin/subscribers/"])
def test_admin_trailing_slash_redirect_echoes_the_host_header(site_root: Path, path: str) -> None:
    """Bypass: Starlette's redirect_slashes in the /admin/ router answers with an absolute
    Location built from the request's Host header (unauthenticated)."""
    with TestClient(create_app(site_root)) as client:
        response = client.get(path, headers={"host": "evil.example"}, follow_redirects=False)
    assert "evil.example" not in response.headers.get("location", "")


@pytest.mark.parametrize("path", ["/bulletin", "/healthz/"])
def test_base_path_redirect_echoes_the_host_header(site_root: Path, path: str) -> None:
    """Bypass: with a base_url path, /bulletin (the site's own address) and /healthz/ are
    redirected to http://<Host>/…, even with --public-only."""
    toml = site_root / "masthead.toml"
    text = toml.read_text("utf-8").replace(
        'base_url = "https://bulletin.example.org/"',
        'base_url = "https://example.org/bulletin/"',
    )
    toml.write_text(text, "utf-8")
    with TestClient(create_app(site_root, public_only=True)) as client:
        response = client.get(path, headers={"host": "evil.example"}, follow_redirects=False)
    assert "evil.example" not in response.headers.get("location", "")


@pytest.mark.parametrize("name", ["a%00.png", "lead%00.png", "river%00.svg.png"])
def test_admin_file_route_with_a_nul_byte_is_not_a_500(site_root: Path, name: str) -> None:
    """Bypass: a NUL byte in /admin/issues/<slug>/files/<name> makes own_file's lstat raise
    ValueError (not OSError): an HTTP 500 with a traceback."""
    (site_root / "issues/2020-03/a.png").write_bytes(png())
    with TestClient(create_app(site_root), raise_server_exceptions=False) as client:
        assert log_in(client).status_code == 200
        response = client.get(f"/admin/issues/2020-03/files/{name}")
    assert response.status_code == 404


def test_editor_inputs_that_are_still_a_500(site_root: Path) -> None:
    """Bypass (issue 13 point 6, editor side): a 20-digit /admin/subscribers/<id>
    (OverflowError) and a 5,000-character trash id to restore (OSError: file name too
    long) are HTTP 500s, not a message."""
    from editor_kit import csrf_of

    with TestClient(create_app(site_root), raise_server_exceptions=False) as client:
        assert log_in(client).status_code == 200
        token = csrf_of(client.get("/admin/issues/2020-03").text)
        by_id = client.get("/admin/subscribers/" + "9" * 20)
        restore = client.post(
            "/admin/issues/2020-03/restore",
            data={"csrf": token, "trash": "20260101-000000-" + "9" * 5000 + "-a"},
        )
    assert by_id.status_code == 404
    assert restore.status_code == 400


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_admin_login_reads_a_chunked_body_without_limit(site_root: Path) -> None:
    """Bypass: _read_form checks only Content-Length; a chunked multipart body to the
    unauthenticated /admin/login is read (and spooled to disk) past MAX_REQUEST_BYTES;
    login never closes the parsed form either (its temporary files leak until GC)."""
    import asyncio

    from masthead.web.admin import MAX_REQUEST_BYTES

    app = create_app(site_root)
    megabyte = b"a" * (1 << 20)
    head = (
        b'--XX\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    sent = 0
    statuses: list[int] = []

    async def receive():  # type: ignore[no-untyped-def]
        # the body as a chunked request delivers it: no Content-Length, one piece at a time
        nonlocal sent
        chunk = head if sent == 0 else megabyte
        sent += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": sent < 40 << 20}

    async def send(message):  # type: ignore[no-untyped-def]
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/admin/login",
        "raw_path": b"/admin/login",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"multipart/form-data; boundary=XX"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    assert statuses == [413]
    assert sent <= MAX_REQUEST_BYTES + (2 << 20), f"the server read {sent} bytes"


@pytest.mark.parametrize(
    "path",
    [
        "/unsubscribe/" + "9" * 20 + "/abcdefghijkl",
        "/confirm/" + "9" * 20 + "/abcdefghijkl",
        "/unsubscribe/" + "9" * 5000 + "/abcdefghijkl",
    ],
    ids=["unsubscribe-20-digits", "confirm-20-digits", "unsubscribe-5000-digits"],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_huge_subscriber_id_in_a_public_link_is_not_a_500(
    site_root: Path, path: str, method: str
) -> None:
    """Bypass: an id over 2**63 (OverflowError binding it to SQLite) or over 4,300 digits
    (ValueError in Starlette's int convertor) in /unsubscribe/ or /confirm/ is an HTTP 500,
    not the 403 every unknown id gets."""
    with TestClient(create_app(site_root), raise_server_exceptions=False) as client:
        response = client.request(
            method,
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code in (403, 404)


def test_readyz_does_not_show_the_server_path_to_anyone(site_root: Path) -> None:
    """Bypass (small leak): the public /readyz answers "no built site in /srv/…/_site",
    the publication's absolute path on the server (and, on a secret mismatch, another
    machine's host name)."""
    with TestClient(create_app(site_root)) as client:
        (site_root / "_site" / "index.html").unlink()
        response = client.get("/readyz")
    assert response.status_code == 503
    assert str(site_root) not in response.text


# ---- bounce mail ------------------------------------------------------------------------


@sqlite_only
def test_old_verp_address_suppresses_the_next_subscriber_given_the_same_id(demo: Path) -> None:
    """Bypass: the VERP mac covers only the id, and SQLite reuses the highest id after a
    removal: a removed subscriber's own old Return-Path forges a hard bounce for whoever
    signs up next."""
    from email.message import Message
    from email.mime.message import MIMEMessage
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    from masthead.content import load_publication
    from masthead.store import open_store, tokens
    from masthead.store import subscriber_list as subs
    from masthead.store.bounces import process_files

    pub = load_publication(demo)
    store = open_store(pub)
    subs.add(store, "ada@example.org", name="Ada", confirmed=True)
    attacker = subs.add(store, "mallory@evil.example", confirmed=True).subscriber
    old_return_path = tokens.verp_address(
        pub, attacker.id, attacker.email
    )  # on every mail Mallory got
    subs.remove(store, "mallory@evil.example")  # "forget me"
    victim = subs.add(store, "victim@example.org", name="Vic", confirmed=True).subscriber

    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "MAILER-DAEMON@mx.evil.example"
    report["To"] = old_return_path
    report["Message-ID"] = "<forged-1@mx.evil.example>"
    report.attach(MIMEText("Undeliverable.\n"))
    per_message, per_recipient = Message(), Message()
    per_message["Reporting-MTA"] = "dns; mx.evil.example"
    per_recipient["Final-Recipient"] = "rfc822; mallory@evil.example"
    per_recipient["Action"] = "failed"
    per_recipient["Status"] = "5.1.1"
    status = Message()
    status.set_type("message/delivery-status")
    status.set_payload([per_message, per_recipient])
    report.attach(status)
    report.attach(MIMEMessage(MIMEText("The issue.")))
    forged = demo / "forged.eml"
    forged.write_bytes(report.as_bytes())

    process_files(pub, store, [forged])
    after = {s.id: s for s in subs.iter_subscribers(store)}
    assert after[victim.id].suppressed is None, "the victim was suppressed by a replayed VERP"


# ---- subscriber export ------------------------------------------------------------------


NAMES = ["Ann;=1+1", "Bob;=HYPERLINK(A1)", "Cy;+7*6", "Dee;@SUM(A1)", "Eve|=1+1"]


def _exported_names(demo: Path) -> tuple[str, list[str]]:
    app = create_app(demo, subscribe_per_minute=1000, subscribe_burst=1000)
    with TestClient(app, raise_server_exceptions=False) as client:
        for i, name in enumerate(NAMES):
            client.post("/subscribe", data={"email": f"s{i}@example.org", "name": name})
    out = subprocess.run(
        [sys.executable, "-m", "masthead", "subscribers", "export", str(demo)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out, [row["name"] for row in csv.DictReader(io.StringIO(out))]


def test_export_formula_after_a_semicolon_runs_in_a_spreadsheet(demo: Path) -> None:
    """Bypass: 'Ann;=1+1' is exported as is; a spreadsheet that splits on ';' (LibreOffice
    with comma and semicolon, Excel in ';' locales) starts a cell at '=' and runs it."""
    _, names = _exported_names(demo)
    assert len(names) == len(NAMES)
    for name in names:
        for piece in name.replace("|", ";").split(";")[1:]:
            assert piece.lstrip()[:1] not in ("=", "+", "-", "@"), name


@pytest.mark.skipif(shutil.which("soffice") is None, reason="apt-get install libreoffice-calc")
def test_export_formula_after_a_semicolon_runs_in_libreoffice(demo: Path, tmp_path: Path) -> None:
    """Bypass, in a real spreadsheet: LibreOffice Calc opening the export with the comma
    and semicolon separators evaluates =1+1 (2) and =HYPERLINK(A1)."""
    out, _ = _exported_names(demo)
    source = tmp_path / "export.csv"
    source.write_text(out, "utf-8")
    subprocess.run(
        [
            "soffice",
            "--headless",
            "--norestore",
            f"-env:UserInstallation=file://{tmp_path}/lo-profile",
            "--infilter=CSV:44/59,34,76,1,,0,false,true,false,false,false,-1,true",
            "--convert-to",
            "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false",
            "--outdir",
            str(tmp_path / "out"),
            str(source),
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )
    values = (tmp_path / "out" / "export.csv").read_text("utf-8")
    assert ",2," not in values and ",42," not in values, values
