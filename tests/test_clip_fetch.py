"""The clip fetcher against a real HTTP server on 127.0.0.1: public addresses only (every
written form of a private one refused before connecting), redirects re-checked and
bounded, size and time limits, one DNS lookup, TLS checked against the original host."""

from __future__ import annotations

import gzip
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from browser import missing_tool
from http_pages import PageServer
from masthead.content import fetch as fetch_module
from masthead.content.fetch import (
    USER_AGENT,
    AddressPolicy,
    fetch,
    is_public,
    literal_address,
    resolve,
)
from masthead.errors import (
    FetchError,
    FetchTimeout,
    ResponseTooLarge,
    TooManyRedirects,
    UnsafeAddress,
)

LOOPBACK_ONLY = [ipaddress.ip_network("127.0.0.1/32")]


@pytest.fixture
def server():
    with PageServer() as s:
        yield s


# ----------------------------------------------------------------------------------------
# The address checker, every form


REFUSED = [
    "127.0.0.1",
    "127.255.255.254",
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "0177.0.0.1",  # octal
    "127.1",  # short form
    "0x7f.1",
    "0",  # 0.0.0.0
    "0.0.0.0",
    "::",
    "::1",
    "[::1]",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:7f00:1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd12:3456::1",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "ff02::1",
    "100.64.0.1",  # carrier-grade NAT
    "100.127.255.254",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "198.18.0.1",
    "192.0.0.8",
]


@pytest.mark.parametrize("host", REFUSED)
def test_every_form_of_a_non_public_address_is_refused(host: str) -> None:
    ip = literal_address(host)
    assert ip is not None
    assert not is_public(ip)
    with pytest.raises(UnsafeAddress, match="not a public internet address"):
        AddressPolicy().check(ip, host)


@pytest.mark.parametrize(
    ("host", "meant"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
    ],
)
def test_numeric_host_forms_are_read_as_the_c_library_reads_them(host: str, meant: str) -> None:
    assert literal_address(host) == ipaddress.ip_address(meant)


@pytest.mark.parametrize(
    "host", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "2002:808:808::"]
)
def test_public_addresses_pass(host: str) -> None:
    ip = literal_address(host)
    assert ip is not None and is_public(ip)
    AddressPolicy().check(ip, host)


def test_names_are_not_mistaken_for_numbers() -> None:
    assert literal_address("example.org") is None
    assert literal_address("1.2.3.4.example") is None


def test_a_name_resolving_to_loopback_is_refused() -> None:
    deadline = fetch_module._Deadline(30)  # ample on a loaded machine: the refusal is the test
    with pytest.raises(UnsafeAddress, match=r"localhost \(127\.0\.0\.1\)|localhost \(::1\)"):
        resolve("localhost", 80, AddressPolicy(), deadline)


# ----------------------------------------------------------------------------------------
# Refused before connecting


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "localhost"]
)
def test_fetch_without_the_flag_refuses_loopback_before_any_request(
    server: PageServer, host: str
) -> None:
    server.page("/", "<p>secret</p>")
    with pytest.raises(UnsafeAddress, match="--allow-private"):
        fetch(server.url("/", host=host))
    assert server.requests == []


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.org/x", "gopher://127.0.0.1:70/", "javascript:alert(1)"],
)
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(UnsafeAddress, match="only http:// and https://"):
        fetch(url)


# ----------------------------------------------------------------------------------------
# Allowed fetches


def test_fetch_with_the_flag_reads_the_page_and_names_masthead(server: PageServer) -> None:
    server.page("/a", "<p>hello</p>", content_type="text/html; charset=ISO-8859-1")
    result = fetch(server.url("/a"), allow_private=True)
    assert result.body == b"<p>hello</p>"
    assert result.content_type == "text/html"
    assert result.charset == "iso-8859-1"
    seen = server.requests[0]
    assert seen.headers["user-agent"] == USER_AGENT
    assert "Masthead" in USER_AGENT


def test_the_host_is_resolved_once_and_named_in_the_host_header(
    server: PageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression for DNS rebinding: the checked address is the one connected to."""
    calls: list[str] = []
    real = socket.getaddrinfo

    def counting(host, *args, **kwargs):
        calls.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    server.page("/", "<p>hi</p>")
    fetch(server.url("/", host="localhost"), allow_private=True)
    assert calls == ["localhost"]
    assert server.requests[0].headers["host"] == f"localhost:{server.port}"


def test_gzip_is_decoded_and_bounded(server: PageServer) -> None:
    server.page("/z", gzip.compress(b"<p>zipped</p>"), headers={"Content-Encoding": "gzip"})
    assert fetch(server.url("/z"), allow_private=True).body == b"<p>zipped</p>"
    bomb = gzip.compress(b"\0" * (3 * 1024 * 1024))  # a few KB that grow to 3 MB
    server.page("/bomb", bomb, headers={"Content-Encoding": "gzip"})
    with pytest.raises(ResponseTooLarge):
        fetch(server.url("/bomb"), allow_private=True, max_bytes=1024 * 1024)


def test_an_http_error_is_reported(server: PageServer) -> None:
    with pytest.raises(FetchError, match="404"):
        fetch(server.url("/missing"), allow_private=True)


# ----------------------------------------------------------------------------------------
# Redirects


def _chain(server: PageServer, length: int) -> str:
    server.page("/end", "<p>the end</p>")
    for i in range(length):
        target = "/end" if i == 0 else f"/r{i - 1}"
        server.redirect(f"/r{i}", target)
    return server.url(f"/r{length - 1}")


def test_five_redirects_are_followed(server: PageServer) -> None:
    result = fetch(_chain(server, 5), allow_private=True)
    assert result.body == b"<p>the end</p>"
    assert len(result.redirects) == 5
    assert result.url == server.url("/end")


def test_a_sixth_redirect_is_refused(server: PageServer) -> None:
    with pytest.raises(TooManyRedirects, match="more than 5 times"):
        fetch(_chain(server, 6), allow_private=True)
    assert "/end" not in server.paths_seen()


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/x",
        "http://0x7f000002:{port}/x",
        "http://[::ffff:127.0.0.2]:{port}/x",
    ],
)
def test_a_redirect_to_a_refused_address_is_checked_again(server: PageServer, target: str) -> None:
    """The first hop is allowed (127.0.0.1 only); the redirect leads elsewhere: refused."""
    server.redirect("/go", target.format(port=server.port))
    with pytest.raises(UnsafeAddress, match=r"127\.0\.0\.2"):
        fetch(server.url("/go"), allow_private=LOOPBACK_ONLY)
    assert server.paths_seen() == ["/go"]


def test_a_redirect_to_another_scheme_is_refused(server: PageServer) -> None:
    server.redirect("/go", "file:///etc/passwd")
    with pytest.raises(UnsafeAddress, match="only http"):
        fetch(server.url("/go"), allow_private=True)


# ----------------------------------------------------------------------------------------
# Size and time


def _huge(h: BaseHTTPRequestHandler) -> None:
    """11 MB, streamed without Content-Length (the client must count)."""
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Connection", "close")
    h.end_headers()
    chunk = b"<p>" + b"x" * 65530 + b"</p>"
    for _ in range(11 * 1024 * 1024 // len(chunk) + 1):
        h.wfile.write(chunk)


def test_a_body_over_10_mb_is_cut_off(server: PageServer) -> None:
    server.handler("/huge", _huge)
    with pytest.raises(ResponseTooLarge, match="larger than 10 MB"):
        fetch(server.url("/huge"), allow_private=True)


def test_a_declared_length_over_the_limit_is_refused_before_reading(server: PageServer) -> None:
    server.page("/big", b"x" * 2048)
    with pytest.raises(ResponseTooLarge):
        fetch(server.url("/big"), allow_private=True, max_bytes=1024)


def _trickle(server: PageServer, headers_too: bool):
    def send(h: BaseHTTPRequestHandler) -> None:
        if headers_too:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 200:
                if server.stop.wait(0.05):
                    return
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.end_headers()
        for _ in range(200):  # a byte every 50 ms: no single read ever times out
            if server.stop.wait(0.05):
                return
            h.wfile.write(b"x")
            h.wfile.flush()

    return send


@pytest.mark.parametrize("headers_too", [False, True])
def test_a_trickling_server_meets_the_overall_deadline(
    server: PageServer, headers_too: bool
) -> None:
    server.handler("/slow", _trickle(server, headers_too))
    start = time.monotonic()
    with pytest.raises(FetchTimeout, match="gave up after 1 s"):
        fetch(server.url("/slow"), allow_private=True, timeout=1.0)
    assert time.monotonic() - start < 9  # below the 10 s the trickle would take


# ----------------------------------------------------------------------------------------
# HTTPS: connect to the checked address, verify the certificate for the original host


@pytest.fixture
def tls_server(tmp_path: Path):
    if shutil.which("openssl") is None:
        missing_tool("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    with PageServer() as s:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        s.httpd.socket = context.wrap_socket(s.httpd.socket, server_side=True)
        yield s, ssl.create_default_context(cafile=str(cert))


def test_https_checks_the_certificate_against_the_original_host(tls_server) -> None:
    server, client_context = tls_server
    server.page("/", "<p>secure</p>")
    url = f"https://localhost:{server.port}/"
    result = fetch(url, allow_private=True, ssl_context=client_context)
    assert result.body == b"<p>secure</p>"
    # the same server by address: the certificate does not name 127.0.0.1, so refused
    with pytest.raises(FetchError, match="secure connection"):
        fetch(f"https://127.0.0.1:{server.port}/", allow_private=True, ssl_context=client_context)


def test_no_thread_is_left_running_after_a_fetch(server: PageServer) -> None:
    server.page("/", "<p>hi</p>")
    before = {t.name for t in threading.enumerate()}
    fetch(server.url("/"), allow_private=True)

    def left() -> set[str]:
        return {t.name for t in threading.enumerate()} - before - {"masthead-dns"}

    deadline = time.monotonic() + 20  # the server's and the watchdog's threads end soon after
    while left() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not left()


def _silent(server: PageServer, after_headers: bool):
    def send(h: BaseHTTPRequestHandler) -> None:
        if after_headers:
            h.send_response(200)
            h.send_header("Content-Length", "100")
            h.end_headers()
            h.wfile.flush()
        server.stop.wait(10)

    return send


@pytest.mark.parametrize("after_headers", [False, True])
def test_a_silent_server_meets_the_overall_deadline(
    server: PageServer, after_headers: bool
) -> None:
    server.handler("/silent", _silent(server, after_headers))
    with pytest.raises(FetchTimeout):
        fetch(server.url("/silent"), allow_private=True, timeout=0.5)


def test_a_closed_port_is_a_clear_error() -> None:
    # bound but never listening: a connection is refused, and no other test can take the
    # port (and listen on it) meanwhile
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        with pytest.raises(FetchError, match=r"cannot connect to 127\.0\.0\.1"):
            fetch(f"http://127.0.0.1:{port}/", allow_private=True)
