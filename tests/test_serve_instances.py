"""Several `masthead serve` instances on one publication and one database, as behind a load
balancer: two real server processes on two loopback ports, driven over HTTP with httpx.

The database is whatever the environment gives (the SQLite file, or the PostgreSQL schema of
the suite's second run); both instances and this test share it and one MASTHEAD_SECRET."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import delete

import patient_http as httpx
from conftest import free_port, point_smtp_at
from editor_kit import PASSWORD, csrf_of, set_password
from masthead.build import build
from masthead.content import load_publication
from masthead.store import LATEST, dispose_engines, open_store, schema, tokens
from masthead.store import subscriber_list as subs

CLI = "from masthead.cli import main; main()"
SECRET = "one secret shared by every instance of the test publication"


@pytest.fixture(autouse=True)
def _shared_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MASTHEAD_SECRET", SECRET)
    yield
    dispose_engines()


class Server:
    """One `masthead serve` process on a free port of 127.0.0.1."""

    ports: ClassVar[set[int]] = set()
    """Ports of the servers of this test run: two instances never get the same one (a port
    picked for the second before the first has bound its own could be the same)."""

    def __init__(self, root: Path, log: Path, *options: str) -> None:
        self.root, self.log, self.options = root, log, options
        self._start()

    def _start(self) -> None:
        port = free_port()
        while port in Server.ports:
            port = free_port()
        Server.ports.add(port)
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    CLI,
                    "serve",
                    str(self.root),
                    "--port",
                    str(port),
                    *self.options,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_until_live(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                log = self.log.read_text("utf-8", "replace")
                # another process took the port between its pick and the bind: a new one
                assert "address already in use" in log.lower(), log
                self._start()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.log.read_text("utf-8", "replace")


@pytest.fixture
def publication(demo: Path, confirm_sink) -> Path:  # type: ignore[no-untyped-def]
    point_smtp_at(demo, confirm_sink.port)
    set_password(demo)
    open_store(load_publication(demo))  # create the database before two servers race to
    dispose_engines()
    return demo


@pytest.fixture
def two_servers(publication: Path, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    servers = [Server(publication, tmp_path / f"{name}.log") for name in ("a", "b")]
    try:
        for server in servers:
            server.wait_until_live()
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def store_of(root: Path):  # type: ignore[no-untyped-def]
    return open_store(load_publication(root))


def subscriber(root: Path, email: str) -> subs.Subscriber:
    return next(s for s in subs.iter_subscribers(store_of(root)) if s.email == email)


def events_of(root: Path, subscriber_id: int) -> list[tuple[str, str, str | None]]:
    return [(e.action, e.source, e.ip) for e in subs.history(store_of(root), subscriber_id)]


def wait_for_mail(sink, count: int, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until ``sink`` holds ``count`` messages: the confirmation email is sent after the
    sign-up is answered (so the answer takes the same time for a known address)."""
    deadline = time.monotonic() + timeout
    while len(sink.received) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # and no more come


def local_path(url: str, pub_base: str = "https://bulletin.example.org") -> str:
    return url.removeprefix(pub_base)


def test_sign_up_confirm_unsubscribe_across_instances(
    publication: Path, two_servers: tuple[Server, Server], confirm_sink
) -> None:  # type: ignore[no-untyped-def]
    a, b = two_servers
    # Sign up on A, through a proxy on 127.0.0.1 that names the reader's address.
    answer = httpx.post(
        f"{a.base}/subscribe",
        data={"email": "zoe@example.org", "name": "Zoë"},
        headers={"X-Forwarded-For": "203.0.113.7"},
    )
    assert answer.status_code == 200 and "we sent a link to zoe@example.org" in answer.text
    wait_for_mail(confirm_sink, 1)
    assert len(confirm_sink.received) == 1
    body = confirm_sink.received[0][2].get_content()
    link = re.search(r"https://bulletin\.example\.org(/confirm/(\d+)/\S+)", body)
    assert link, body
    sid = int(link[2])
    assert subscriber(publication, "zoe@example.org").status == "pending"

    # Confirm on B (the link was signed by A's process: the same secret).
    page = httpx.get(b.base + link[1])
    assert page.status_code == 200 and "Receive Riverside Bulletin" in page.text
    assert httpx.post(b.base + link[1]).status_code == 200
    assert subscriber(publication, "zoe@example.org").status == "active"

    # One-click unsubscribe on A; B sees it, and so does the store.
    pub = load_publication(publication)
    url = local_path(tokens.unsubscribe_url(pub, sid, "zoe@example.org"))
    one_click = httpx.post(
        a.base + url,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 200
    assert "zoe@example.org is unsubscribed" in one_click.text
    again = httpx.post(b.base + url, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200  # a retrying mail client, answered by the other instance
    zoe = subscriber(publication, "zoe@example.org")
    assert (zoe.status, zoe.suppressed) == ("unsubscribed", "unsubscribed")
    assert events_of(publication, sid) == [
        ("subscribe", "form", "203.0.113.7"),
        ("confirm", "form", "127.0.0.1"),
        ("unsubscribe", "email", "127.0.0.1"),
    ]


def test_one_click_posted_to_both_instances_at_once_is_recorded_once(
    publication: Path, two_servers: tuple[Server, Server]
) -> None:
    """Regression: on PostgreSQL two requests suppressing one address at the same moment
    could both find it unsuppressed and both insert it; the loser failed with a unique-key
    error (a 500 to a mail client's one-click retry)."""
    import threading

    a, b = two_servers
    pub = load_publication(publication)
    sid = subs.add(open_store(pub), "twice@example.org", confirmed=True).subscriber.id
    path = local_path(tokens.unsubscribe_url(pub, sid, "twice@example.org"))
    start = threading.Barrier(16)
    codes: list[int] = []

    def post(base: str) -> None:
        with httpx.Client() as client:
            start.wait()
            codes.append(
                client.post(base + path, data={"List-Unsubscribe": "One-Click"}).status_code
            )

    threads = [threading.Thread(target=post, args=(s.base,)) for s in (a, b) * 8]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 16
    assert [e[0] for e in events_of(publication, sid)] == ["subscribe", "unsubscribe"]
    twice = subscriber(publication, "twice@example.org")
    assert (twice.status, twice.suppressed) == ("unsubscribed", "unsubscribed")


def test_confirmation_mail_limit_holds_across_instances(
    publication: Path, two_servers: tuple[Server, Server], confirm_sink
) -> None:  # type: ignore[no-untyped-def]
    """Counted in the database: alternating instances does not mail an inbox more often."""
    a, b = two_servers
    for server in (a, b, a, b):
        answer = httpx.post(f"{server.base}/subscribe", data={"email": "victim@example.org"})
        assert answer.status_code == 200 and "we sent a link" in answer.text
    wait_for_mail(confirm_sink, 2)
    assert len(confirm_sink.received) == 2


def test_admin_session_and_csrf_work_on_either_instance(
    publication: Path, two_servers: tuple[Server, Server]
) -> None:
    a, b = two_servers
    with httpx.Client(base_url=a.base) as on_a:
        login = on_a.get("/admin/login")
        done = on_a.post(
            "/admin/login?next=/admin/",
            data={"csrf": csrf_of(login.text), "password": PASSWORD},
        )
        assert done.status_code == 303
        cookie = on_a.cookies.get("masthead_admin")
        assert cookie
        csrf = csrf_of(on_a.get("/admin/subscribers").text)

    with httpx.Client(base_url=b.base, cookies={"masthead_admin": cookie}) as on_b:
        added = on_b.post(
            "/admin/subscribers/add",
            data={"csrf": csrf, "email": "ada@example.org", "name": "Ada", "confirmed": "yes"},
        )
        assert added.status_code == 303, added.text
        assert added.headers["location"] == "/admin/subscribers"
        # Without the token the same cookie's POST is refused.
        refused = on_b.post(
            "/admin/subscribers/add", data={"email": "eve@example.org", "confirmed": "yes"}
        )
        assert refused.status_code == 403
    assert subscriber(publication, "ada@example.org").status == "active"
    emails = {s.email for s in subs.iter_subscribers(store_of(publication))}
    assert "eve@example.org" not in emails

    # Log out (everywhere) on B: A refuses the cookie from now on.
    with httpx.Client(base_url=b.base, cookies={"masthead_admin": cookie}) as on_b:
        assert on_b.post("/admin/logout", data={"csrf": csrf}).status_code == 303
    with httpx.Client(base_url=a.base, cookies={"masthead_admin": cookie}) as on_a:
        page = on_a.get("/admin/subscribers")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/admin/login")
        late = on_a.post(
            "/admin/subscribers/add",
            data={"csrf": csrf, "email": "mallory@example.org", "confirmed": "yes"},
        )
        assert late.status_code == 403


def test_readyz_follows_the_build_and_the_schema(
    publication: Path, two_servers: tuple[Server, Server]
) -> None:
    a, b = two_servers
    for server in (a, b):
        live = httpx.get(f"{server.base}/healthz")
        assert (live.status_code, live.text) == (200, "ok")
        assert live.headers["cache-control"] == "no-store"
        ready = httpx.get(f"{server.base}/readyz")
        assert ready.status_code == 503
        assert ready.headers["cache-control"] == "no-store"
        assert ready.text == "no built site: run `masthead build`"  # no server path
        assert "\n" not in ready.text

    build(publication)
    for server in (a, b):
        ready = httpx.get(f"{server.base}/readyz")
        assert (ready.status_code, ready.text) == (200, "ready")

    # A newer Masthead upgraded the database: these instances must leave the pool.
    store = store_of(publication)
    with store.begin() as conn:
        conn.execute(schema.schema_version.insert().values(version=LATEST + 1))
    try:
        for server in (a, b):
            ready = httpx.get(f"{server.base}/readyz")
            assert ready.status_code == 503
            assert ready.text == (
                f"database schema is at version {LATEST + 1}, this Masthead needs {LATEST}: "
                "upgrade Masthead"
            )
            assert httpx.get(f"{server.base}/healthz").status_code == 200  # alive all the same
    finally:  # (a later test must not find a database from the future)
        with store.begin() as conn:
            conn.execute(
                delete(schema.schema_version).where(schema.schema_version.c.version == LATEST + 1)
            )
    assert httpx.get(f"{a.base}/readyz").status_code == 200


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(
    publication: Path, two_servers: tuple[Server, Server]
) -> None:
    """[serve] trusted_proxies defaults to 127.0.0.1 and ::1: a client connecting from
    127.0.0.2 (another loopback address, standing for a machine that is not the proxy)
    cannot put an address of its choice into the consent record."""
    a, _ = two_servers
    pub = load_publication(publication)
    store = open_store(pub)
    ids = [subs.add(store, f"r{n}@example.org", confirmed=True).subscriber.id for n in (1, 2)]
    urls = [
        a.base + local_path(tokens.unsubscribe_url(pub, sid, f"r{n}@example.org"))
        for n, sid in zip((1, 2), ids, strict=True)
    ]
    forged = {"X-Forwarded-For": "198.51.100.9"}
    from_proxy = httpx.post(urls[0], data={"List-Unsubscribe": "One-Click"}, headers=forged)
    assert from_proxy.status_code == 200
    untrusted = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=untrusted) as client:
        direct = client.post(urls[1], data={"List-Unsubscribe": "One-Click"}, headers=forged)
    assert direct.status_code == 200
    assert events_of(publication, ids[0])[-1] == ("unsubscribe", "email", "198.51.100.9")
    assert events_of(publication, ids[1])[-1] == ("unsubscribe", "email", "127.0.0.2")


def test_trusted_proxies_setting_is_passed_to_the_server(publication: Path, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With ``trusted_proxies = ["10.0.0.0/8"]`` even 127.0.0.1 is not a proxy."""
    toml = publication / "masthead.toml"
    text = toml.read_text("utf-8").replace(
        "[serve]\n", '[serve]\ntrusted_proxies = ["10.0.0.0/8"]\n'
    )
    toml.write_text(text, "utf-8")
    pub = load_publication(publication)
    assert pub.config.serve.trusted_proxies == ["10.0.0.0/8"]
    sid = subs.add(open_store(pub), "r@example.org", confirmed=True).subscriber.id
    dispose_engines()
    server = Server(publication, tmp_path / "c.log")
    try:
        server.wait_until_live()
        url = server.base + local_path(tokens.unsubscribe_url(pub, sid, "r@example.org"))
        answer = httpx.post(url, headers={"X-Forwarded-For": "198.51.100.9"})
        assert answer.status_code == 200
    finally:
        server.stop()
    assert events_of(publication, sid)[-1] == ("unsubscribe", "email", "127.0.0.1")


def test_public_only_with_workers(publication: Path, tmp_path: Path) -> None:
    """`--public-only --workers 2`: the readers' endpoints and the probes, no /admin/."""
    build(publication)
    pub = load_publication(publication)
    sid = subs.add(open_store(pub), "w@example.org", confirmed=True).subscriber.id
    dispose_engines()
    server = Server(publication, tmp_path / "w.log", "--public-only", "--workers", "2")
    try:
        server.wait_until_live()
        assert httpx.get(f"{server.base}/readyz").text == "ready"
        assert httpx.get(f"{server.base}/admin/login").status_code == 404
        assert httpx.get(f"{server.base}/admin/").status_code == 404
        assert "Riverside Bulletin" in httpx.get(f"{server.base}/").text
        url = server.base + local_path(tokens.unsubscribe_url(pub, sid, "w@example.org"))
        assert httpx.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    finally:
        out = server.stop()
    assert subscriber(publication, "w@example.org").status == "unsubscribed"
    assert "2 worker processes" in out
    assert "Public endpoints only" in out
    assert f"unsubscribed #{sid} from 127.0.0.1" in out  # the workers log too


def test_a_trusted_proxy_with_host_bits_is_refused_with_both_meanings(demo: Path) -> None:
    """Regression: "10.0.0.5/24" passed the check, but uvicorn reads only exact networks and
    took it for a name that never matches: every reader then had the proxy's address."""
    from masthead.errors import ConfigError

    toml = demo / "masthead.toml"
    text = toml.read_text("utf-8") + '\n[serve]\ntrusted_proxies = ["10.0.0.5/24"]\n'
    toml.write_text(text, "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_publication(demo)
    assert 'write the network "10.0.0.0/24" or the address "10.0.0.5"' in str(caught.value)


def test_a_trusted_proxy_that_is_not_an_address_is_refused(demo: Path) -> None:
    from masthead.errors import ConfigError

    toml = demo / "masthead.toml"
    toml.write_text(toml.read_text("utf-8") + '\n[serve]\ntrusted_proxies = ["nginx"]\n', "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_publication(demo)
    assert "trusted_proxies" in str(caught.value)
    assert "expected IP addresses or networks" in str(caught.value)
    assert "'nginx'" in str(caught.value)
