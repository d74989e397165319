"""`masthead serve`: one-click unsubscribe (RFC 8058), confirmation, sign-up, static site.

In-process through Starlette's TestClient, plus one test against the real server."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import patient_http as httpx
from conftest import free_port, point_smtp_at
from masthead.content import load_publication
from masthead.store import dispose_engines, open_store, tokens
from masthead.store import subscriber_list as subs
from masthead.web import create_app, is_loopback


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    dispose_engines()


@pytest.fixture
def site(demo: Path) -> Path:
    (demo / "_site" / "2020-03").mkdir(parents=True)
    (demo / "_site" / "index.html").write_text("<h1>Riverside Bulletin</h1>", "utf-8")
    (demo / "_site" / "2020-03" / "index.html").write_text("<h1>March</h1>", "utf-8")
    return demo


@pytest.fixture
def client(site: Path):
    with TestClient(create_app(site), base_url="https://bulletin.example.org") as c:
        yield c


def add_active(root: Path, email: str = "ada@example.org") -> tuple[object, int]:
    pub = load_publication(root)
    result = subs.add(open_store(pub), email, name="Ada", confirmed=True)
    return pub, result.subscriber.id


def path_of(url: str) -> str:
    return url.removeprefix("https://bulletin.example.org")


def status_of(root: Path, subscriber_id: int) -> tuple[str, str | None]:
    store = open_store(load_publication(root))
    s = next(s for s in subs.iter_subscribers(store) if s.id == subscriber_id)
    return s.status, s.suppressed


def test_static_site_and_health(client: TestClient) -> None:
    assert client.get("/").text == "<h1>Riverside Bulletin</h1>"
    assert client.get("/2020-03/").text == "<h1>March</h1>"
    assert client.get("/nothing-here").status_code == 404
    health = client.get("/healthz")
    assert (health.status_code, health.text) == (200, "ok")


def test_get_unsubscribe_shows_a_button_and_changes_nothing(site: Path, client) -> None:
    pub, sid = add_active(site)
    url = path_of(tokens.unsubscribe_url(pub, sid, "ada@example.org"))
    for _ in range(3):  # a mail scanner prefetching the link
        page = client.get(url)
        assert page.status_code == 200
    assert "Stop sending Riverside Bulletin to ada@example.org?" in page.text
    assert f'<form method="post" action="{url}">' in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert status_of(site, sid) == ("active", None)


def test_one_click_post_unsubscribes_at_once(site: Path, client) -> None:
    pub, sid = add_active(site)
    url = path_of(tokens.unsubscribe_url(pub, sid, "ada@example.org"))
    # What Gmail and others send (RFC 8058 section 3.1).
    answer = client.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    assert "ada@example.org is unsubscribed from Riverside Bulletin" in answer.text
    assert status_of(site, sid) == ("unsubscribed", "unsubscribed")
    events = subs.history(open_store(pub), sid)
    assert (events[-1].action, events[-1].source, events[-1].ip) == (
        "unsubscribe",
        "email",
        "testclient",
    )
    # Again (a second click, a retrying client): still 2xx, nothing new recorded.
    assert client.post(url, files={"List-Unsubscribe": (None, "One-Click")}).status_code == 200
    assert len(subs.history(open_store(pub), sid)) == len(events)


def test_forged_tampered_and_swapped_tokens_are_refused(site: Path, client) -> None:
    pub, ada = add_active(site)
    _, bob = add_active(site, "bob@example.org")
    ada_token = tokens.make_token(pub, "unsubscribe", ada, "ada@example.org")
    tampered = ada_token[:-1] + ("A" if ada_token[-1] != "A" else "B")
    confirm_token = tokens.make_token(pub, "confirm", ada, "ada@example.org")
    attempts = [
        f"/unsubscribe/{bob}/{ada_token}",  # Ada's token on Bob's id
        f"/unsubscribe/{ada}/{tampered}",
        f"/unsubscribe/{ada}/{confirm_token}",  # a token for another purpose
        f"/unsubscribe/999/{ada_token}",
        f"/confirm/{ada}/{ada_token}",
    ]
    for url in attempts:
        for method in ("GET", "POST"):
            answer = client.request(method, url, content=b"List-Unsubscribe=One-Click")
            assert answer.status_code == 403, (method, url)
            assert "This link is not valid" in answer.text
    assert status_of(site, ada) == ("active", None)
    assert status_of(site, bob) == ("active", None)
    assert client.get("/unsubscribe/abc/def").status_code == 404


def test_sign_up_then_confirm_records_time_source_and_ip(
    site: Path, client: TestClient, confirm_sink
) -> None:
    point_smtp_at(site, confirm_sink.port)
    # the app read the config at start: make one that sees the sink's port
    with TestClient(create_app(site), base_url="https://bulletin.example.org") as c:
        form = c.get("/subscribe")
        assert form.status_code == 200 and 'name="email"' in form.text
        answer = c.post("/subscribe", data={"email": "Zoe@Example.org", "name": "Zoë\r\nX"})
        assert answer.status_code == 200
        assert "we sent a link to Zoe@example.org" in answer.text
        assert len(confirm_sink.received) == 1
        body = confirm_sink.received[0][2].get_content()
        link = re.search(r"https://bulletin\.example\.org(/confirm/(\d+)/\S+)", body)
        assert link
        sid = int(link[2])
        assert status_of(site, sid) == ("pending", None)

        page = c.get(link[1])  # a prefetch: shows a button, confirms nothing
        assert "Receive Riverside Bulletin at Zoe@example.org?" in page.text
        assert status_of(site, sid) == ("pending", None)
        done = c.post(link[1])
        assert done.status_code == 200 and "Thank you" in done.text
        assert status_of(site, sid) == ("active", None)

        store = open_store(load_publication(site))
        events = [(e.action, e.source, e.ip) for e in subs.history(store, sid)]
        assert events == [("subscribe", "form", "testclient"), ("confirm", "form", "testclient")]
        assert all(e.at.tzinfo is not None for e in subs.history(store, sid))
        zoe = next(subs.iter_subscribers(store))
        assert zoe.name == "Zoë X"

        # Signing up again with an address on the list says the same and sends nothing.
        again = c.post("/subscribe", data={"email": "zoe@example.org"})
        assert again.status_code == 200 and "we sent a link" in again.text
        assert len(confirm_sink.received) == 1


def test_sign_up_refuses_bad_addresses_and_bots(site: Path, client: TestClient) -> None:
    bad = client.post("/subscribe", data={"email": "not an address"})
    assert bad.status_code == 400 and "does not look like an email address" in bad.text
    bot = client.post("/subscribe", data={"email": "bot@example.org", "website": "http://spam"})
    assert bot.status_code == 200
    assert list(subs.iter_subscribers(open_store(load_publication(site)))) == []
    json_body = client.post("/subscribe", json={"email": "a@example.org"})
    assert json_body.status_code == 415


def test_sign_up_is_rate_limited_per_ip(site: Path) -> None:
    app = create_app(site, subscribe_burst=3, subscribe_per_minute=0.001)
    with TestClient(app) as c:
        codes = [c.post("/subscribe", data={"email": "x"}).status_code for _ in range(5)]
    assert codes == [400, 400, 400, 429, 429]


def test_base_url_with_a_path_serves_under_it(site: Path) -> None:
    toml = site / "masthead.toml"
    toml.write_text(
        toml.read_text("utf-8").replace(
            'base_url = "https://bulletin.example.org/"',
            'base_url = "https://example.org/bulletin/"',
        ),
        "utf-8",
    )
    pub, sid = add_active(site)
    url = tokens.unsubscribe_url(pub, sid, "ada@example.org")
    assert url.startswith("https://example.org/bulletin/unsubscribe/")
    with TestClient(create_app(site), base_url="https://example.org") as c:
        assert c.get("/bulletin/").text == "<h1>Riverside Bulletin</h1>"
        assert c.get("/", follow_redirects=False).headers["location"] == "/bulletin/"
        assert c.post(url.removeprefix("https://example.org")).status_code == 200
    assert status_of(site, sid)[0] == "unsubscribed"


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")


CLI = "from masthead.cli import main; main()"


def test_real_server_one_click_unsubscribe(site: Path) -> None:
    """`masthead serve` in its own process on a free port on 127.0.0.1."""
    pub, sid = add_active(site)
    dispose_engines()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "serve", str(site), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/healthz").text == "ok":
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        assert httpx.get(f"{base}/").text == "<h1>Riverside Bulletin</h1>"
        url = base + path_of(tokens.unsubscribe_url(pub, sid, "ada@example.org"))
        assert httpx.get(url).status_code == 200
        assert status_of(site, sid)[0] == "active"
        answer = httpx.post(url, data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200
        assert status_of(site, sid) == ("unsubscribed", "unsubscribed")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert b"Serving Riverside Bulletin at http://127.0.0.1:" in out


def test_an_old_confirm_link_does_not_undo_an_unsubscription(site: Path, client) -> None:
    """Regression: a confirmation mail found again after unsubscribing must not re-subscribe."""
    from datetime import UTC, datetime

    from sqlalchemy import update

    from masthead.store import suppressions

    pub, sid = add_active(site)
    old_token = tokens.make_token(pub, "confirm", sid, "ada@example.org")
    issued = tokens.token_issued(old_token)
    assert issued is not None
    store = open_store(pub)
    subs.unsubscribe(store, sid, source="email")
    with store.begin() as conn:  # unsubscribed a minute after the link was mailed
        conn.execute(update(suppressions).values(at=datetime.fromtimestamp(issued + 60, UTC)))
    assert client.post(f"/confirm/{sid}/{old_token}").status_code == 403
    assert status_of(site, sid) == ("unsubscribed", "unsubscribed")
    # A new sign-up mails a new link, issued after the unsubscription: that one works.
    new_token = tokens.make_token(pub, "confirm", sid, "ada@example.org", issued=issued + 120)
    assert client.post(f"/confirm/{sid}/{new_token}").status_code == 200
    assert status_of(site, sid) == ("active", None)


def test_unsubscribe_reports_the_suppression_it_made_or_found(site: Path) -> None:
    """A fresh suppression reports its own reason; an address already suppressed keeps its
    first one (one INSERT … ON CONFLICT DO NOTHING RETURNING tells them apart)."""
    pub, ada = add_active(site)
    _, bob = add_active(site, "bob@example.org")
    store = open_store(pub)
    first = subs.unsubscribe(store, ada, source="email")
    assert first is not None and (first.status, first.suppressed) == (
        "unsubscribed",
        "unsubscribed",
    )
    subs.suppress(store, "bob@example.org", "hard-bounce", source="email")
    later = subs.unsubscribe(store, bob, source="email")  # the first reason stays
    assert later is not None and (later.status, later.suppressed) == ("unsubscribed", "hard-bounce")
    assert [e.action for e in subs.history(store, bob)] == ["subscribe", "bounce", "unsubscribe"]


def test_readyz_waits_for_a_database_upgrade(client: TestClient, site: Path) -> None:
    """An instance whose database is behind its schema (restored from an old backup, say)
    stays out of the pool until `masthead db upgrade`; /healthz still says it is alive."""
    from sqlalchemy import delete

    from masthead.store import LATEST, schema

    assert (client.get("/readyz").status_code, client.get("/readyz").text) == (200, "ready")
    store = open_store(load_publication(site))
    with store.begin() as conn:
        conn.execute(delete(schema.schema_version))
    behind = client.get("/readyz")
    assert behind.status_code == 503
    assert behind.text == (
        f"database schema is at version 0, this Masthead needs {LATEST}: run `masthead db upgrade`"
    )
    assert behind.headers["cache-control"] == "no-store"
    assert client.get("/healthz").text == "ok"
    open_store(load_publication(site))  # what `masthead db upgrade` does
    assert client.get("/readyz").text == "ready"


def test_public_only_leaves_out_the_editors_app(site: Path) -> None:
    from editor_kit import set_password

    set_password(site)
    with TestClient(create_app(site), base_url="https://bulletin.example.org") as full:
        assert full.get("/admin/login").status_code == 200
    app = create_app(site, public_only=True)
    with TestClient(app, base_url="https://bulletin.example.org") as public:
        assert public.get("/admin/login").status_code == 404
        assert public.get("/admin/").status_code == 404
        assert public.get("/subscribe").status_code == 200
        assert public.get("/readyz").text == "ready"
