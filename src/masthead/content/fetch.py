"""A careful HTTP(S) fetcher for ``masthead clip``: public addresses only, bounded in every way.

A clipped address comes from an email, a chat or a search result, so it is treated as hostile:

- only ``http`` and ``https``;
- the host is resolved **once**, every address it resolves to must be public (no loopback,
  private, link-local such as the cloud metadata address 169.254.169.254, carrier-grade NAT,
  multicast, reserved, unspecified; IPv4 hidden in IPv6 — mapped, 6to4, NAT64, Teredo —
  is unwrapped and checked too), and the connection goes to that checked address: there is
  no second lookup that a rebinding DNS server could answer differently. The request still
  names the original host (``Host:`` header, TLS SNI and certificate check);
- hosts written as numbers in any form (``2130706433``, ``0x7f000001``, ``0177.0.0.1``,
  ``127.1``) are read the way the C library reads them, then checked;
- every redirect is checked the same way; at most 5 are followed;
- at most 10 MB of body (streamed; reading stops at the limit) and 20 s in all (an overall
  deadline, not a per-read timeout: a server that trickles bytes is cut off too).

Each refusal raises its own :class:`~masthead.errors.FetchError` subclass. ``allow_private``
permits non-public addresses (an intranet; the tests' server on 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Collection
from dataclasses import dataclass, field
from email.message import Message
from urllib.parse import urljoin, urlsplit

from .. import __version__
from ..errors import FetchError, FetchTimeout, ResponseTooLarge, TooManyRedirects, UnsafeAddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_BYTES = 10 * 1024 * 1024
TIMEOUT = 20.0
MAX_REDIRECTS = 5
USER_AGENT = f"Masthead/{__version__} (article clipper; +https://pypi.org/project/masthead/)"

_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024

# Networks that are not reachable on the public internet, beyond what `ipaddress` flags.
_NOT_PUBLIC = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # carrier-grade NAT
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
        "64:ff9b:1::/48",  # local-use NAT64
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


@dataclass
class FetchResult:
    """A fetched response: the final address after redirects, its type and body."""

    url: str
    status: int
    content_type: str
    """The media type without parameters, lower case (``text/html``)."""
    charset: str | None
    """The charset the server declared in ``Content-Type``, if any (it may be wrong)."""
    body: bytes
    redirects: list[str] = field(default_factory=list)
    """Every address visited before ``url``."""


# ----------------------------------------------------------------------------------------
# Addresses


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, Teredo), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    # IPv4-compatible (::a.b.c.d, deprecated): still routed to a.b.c.d by some stacks
    if int(ip) >> 32 == 0 and int(ip) > 0xFFFF:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    """Whether ``ip`` is an ordinary public unicast address (and so is any IPv4 inside it)."""
    if (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
        or any(ip.version == n.version and ip in n for n in _NOT_PUBLIC)
    ):
        return False
    inner = embedded_ipv4(ip)
    return inner is None or is_public(inner)


_NUMERIC_V4 = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.I)


def literal_address(host: str) -> IPAddress | None:
    """The address a host written as an IP literal means, in any of its forms, or None for a
    name. ``2130706433``, ``0x7f000001``, ``0177.0.0.1`` and ``127.1`` all mean 127.0.0.1
    to the C library (``inet_aton``), so they are read the same way here."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if "%" in host:  # an IPv6 zone ("fe80::1%eth0"): link-local by nature
        try:
            return ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None
    if _NUMERIC_V4.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
        except OSError:
            raise UnsafeAddress(
                f"{host!r} looks like a numeric address but is not a valid one",
                fix="check the address",
            ) from None
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses may be fetched: public ones, plus non-public ones when
    ``allow_private`` is True, or those in the networks it lists."""

    allow_private: bool | Collection[IPNetwork] = False

    def check(self, ip: IPAddress, host: str) -> None:
        """Raise :class:`UnsafeAddress` unless ``ip`` (one address of ``host``) is allowed."""
        if is_public(ip) or self.allow_private is True:
            return
        if self.allow_private is not False and any(
            ip.version == n.version and ip in n for n in self.allow_private
        ):
            return
        shown = host if str(ip) == host.strip("[]") else f"{host} ({ip})"
        raise UnsafeAddress(
            f"refusing to fetch from {shown}: {_describe(ip)}, not a public internet address",
            fix="clip pages from the public web; for a page on your own network, "
            "add --allow-private",
        )


def _describe(ip: IPAddress) -> str:
    inner = embedded_ipv4(ip)
    if inner is not None and not is_public(inner):
        return f"it carries the address {inner}, which is {_describe(inner)}"
    if ip.is_loopback:
        return "a loopback address (this machine)"
    if ip.is_link_local:
        return "a link-local address (such as a cloud metadata service)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.version == 4 and ip in ipaddress.ip_network("100.64.0.0/10"):
        return "a carrier-grade NAT address"
    if ip.is_private:
        return "a private-network address"
    return "a reserved address"


def resolve(host: str, port: int, policy: AddressPolicy, deadline: _Deadline) -> list[IPAddress]:
    """Resolve ``host`` once and check every address it has; return them in order."""
    literal = literal_address(host)
    if literal is not None:
        policy.check(literal, host)
        return [literal]
    addresses: list[IPAddress] = []
    for info in _getaddrinfo(host, port, deadline):
        text = str(info[4][0]).split("%", 1)[0]
        ip = ipaddress.ip_address(text)
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise FetchError(f"the host {host!r} has no address", fix="check the address")
    for ip in addresses:  # every one: a name with one private address among public ones is out
        policy.check(ip, host)
    return addresses


def _getaddrinfo(host: str, port: int, deadline: _Deadline) -> list:
    """``socket.getaddrinfo`` bounded by the deadline (the C call itself cannot be)."""
    box: dict[str, object] = {}

    def lookup() -> None:
        try:
            box["result"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            box["error"] = exc

    thread = threading.Thread(target=lookup, daemon=True, name="masthead-dns")
    thread.start()
    thread.join(deadline.remaining())
    if thread.is_alive():
        deadline.expired()
    if "error" in box:
        raise FetchError(
            f"cannot find the host {host!r}: {box['error']}",
            fix="check the address and your internet connection",
        )
    return box["result"]  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------
# Connections pinned to the checked address


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            self.expired()
        return left

    def passed(self) -> bool:
        return time.monotonic() >= self.end

    def expired(self) -> None:
        raise FetchTimeout(
            f"gave up after {self.seconds:g} s: the server is too slow",
            fix="try again later, or save the page from your browser and clip the file",
        )


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a fixed, already checked address; ``Host:`` names the host."""

    def __init__(self, host: str, port: int, address: IPAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.raw_sock: socket.socket | None = None
        """Kept after http.client hands the socket to a response (``Connection: close``),
        so the deadline can still reach it."""

    def _open_socket(self) -> socket.socket:
        # Not socket.create_connection: it would look the address up again.
        family = socket.AF_INET6 if self.address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect((str(self.address), self.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        return sock

    def connect(self) -> None:
        self.sock = self.raw_sock = self._open_socket()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """HTTPS to a fixed address; SNI and the certificate check use the original host name."""

    default_port = http.client.HTTPS_PORT

    def __init__(
        self, host: str, port: int, address: IPAddress, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, address, timeout)
        self.context = context

    def connect(self) -> None:
        sock = self._open_socket()
        try:
            self.sock = self.raw_sock = self.context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


# ----------------------------------------------------------------------------------------
# Fetching


def fetch(
    url: str,
    *,
    allow_private: bool | Collection[IPNetwork] = False,
    max_bytes: int = MAX_BYTES,
    timeout: float = TIMEOUT,
    max_redirects: int = MAX_REDIRECTS,
    accept: str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
    ssl_context: ssl.SSLContext | None = None,
) -> FetchResult:
    """GET ``url`` safely (see the module docstring) and return the final response.

    ``timeout`` is the overall deadline in seconds, redirects included.
    """
    policy = AddressPolicy(allow_private)
    deadline = _Deadline(timeout)
    context = ssl_context or ssl.create_default_context()
    visited: list[str] = []
    current = url
    while True:
        status, headers, body, location = _request(
            current, policy, deadline, max_bytes, accept, context
        )
        if location is None:
            break
        visited.append(current)
        if len(visited) > max_redirects:
            raise TooManyRedirects(
                f"{url} redirected more than {max_redirects} times (last to {location})",
                fix="open it in a browser and clip the address it finally shows",
            )
        current = location
    if not 200 <= status < 300:
        reason = http.client.responses.get(status, "")
        raise FetchError(
            f"{current} answered {status} {reason}".rstrip(),
            fix="check the address; if the page needs a login, save it from your browser "
            "and clip the file",
        )
    message = Message()
    message["content-type"] = headers.get("content-type", "application/octet-stream")
    return FetchResult(
        url=current,
        status=status,
        content_type=message.get_content_type(),
        charset=message.get_content_charset(),
        body=body,
        redirects=visited,
    )


def _split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path+query) of an http(s) URL, or UnsafeAddress."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeAddress(f"{url!r} is not a valid address: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeAddress(
            f"only http:// and https:// addresses can be clipped, not {scheme or 'this'}: {url!r}",
            fix="give the page's web address, or the path of a saved .html file",
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeAddress(f"{url!r} has no host name", fix="check the address")
    if literal_address(host) is None:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise UnsafeAddress(f"{url!r} has an invalid host name") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, host, port or (443 if scheme == "https" else 80), path


def _request(
    url: str,
    policy: AddressPolicy,
    deadline: _Deadline,
    max_bytes: int,
    accept: str,
    context: ssl.SSLContext,
) -> tuple[int, dict[str, str], bytes, str | None]:
    """One GET: (status, headers, body, redirect target or None)."""
    scheme, host, port, path = _split(url)
    addresses = resolve(host, port, policy, deadline)
    last_error: OSError | None = None
    for address in addresses:
        if scheme == "https":
            conn: _PinnedHTTPConnection = _PinnedHTTPSConnection(
                host, port, address, deadline.remaining(), context
            )
        else:
            conn = _PinnedHTTPConnection(host, port, address, deadline.remaining())
        try:
            return _exchange(conn, url, path, deadline, max_bytes, accept)
        except ssl.SSLError as exc:
            raise FetchError(
                f"the secure connection to {host} failed: {exc.reason or exc}",
                fix="the site's certificate may be invalid; check the address",
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            # the watchdog's shutdown shows up as a reset or a truncated response
            if deadline.passed() or isinstance(exc, TimeoutError):
                deadline.expired()
            if not isinstance(exc, ConnectionRefusedError):
                raise FetchError(f"fetching {url} failed: {exc or type(exc).__name__}") from None
            last_error = exc  # try the host's next address
        finally:
            conn.close()
    raise FetchError(
        f"cannot connect to {host}:{port}: {last_error}",
        fix="check the address, or try again later",
    )


def _exchange(
    conn: _PinnedHTTPConnection,
    url: str,
    path: str,
    deadline: _Deadline,
    max_bytes: int,
    accept: str,
) -> tuple[int, dict[str, str], bytes, str | None]:
    # A watchdog closes the socket at the deadline: a server trickling headers one byte at a
    # time would otherwise reset every per-read timeout.
    watchdog = threading.Timer(deadline.remaining(), _shutdown, args=(conn,))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.putheader("User-Agent", USER_AGENT)
        conn.putheader("Accept", accept)
        conn.putheader("Accept-Encoding", "gzip, deflate")
        conn.putheader("Connection", "close")
        conn.endheaders()
        response = conn.getresponse()
        try:
            headers = {k.lower(): v for k, v in response.getheaders()}
            location = headers.get("location")
            if response.status in _REDIRECTS and location:
                return response.status, headers, b"", urljoin(url, location.strip())
            body = _read_body(conn, response, headers, deadline, max_bytes, url)
            return response.status, headers, body, None
        finally:
            response.close()
    finally:
        watchdog.cancel()


def _shutdown(conn: _PinnedHTTPConnection) -> None:
    sock = conn.raw_sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


def _read_body(
    conn: _PinnedHTTPConnection,
    response: http.client.HTTPResponse,
    headers: dict[str, str],
    deadline: _Deadline,
    max_bytes: int,
    url: str,
) -> bytes:
    too_large = ResponseTooLarge(
        f"{url} is larger than {_size(max_bytes)}: that is not an article page",
        fix="save the page from your browser and clip the file if you really need it",
    )
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    encoding = headers.get("content-encoding", "identity").strip().lower()
    decoder = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib, auto-detected
    elif encoding not in ("", "identity"):
        raise FetchError(f"{url} is sent in an encoding Masthead cannot read: {encoding}")
    out = bytearray()
    received = 0
    while True:
        if conn.raw_sock is not None:
            conn.raw_sock.settimeout(deadline.remaining())
        chunk = response.read1(_CHUNK)
        if deadline.passed():
            deadline.expired()
        if not chunk:
            break
        received += len(chunk)
        if received > max_bytes:
            raise too_large
        if decoder is None:
            out += chunk
        else:
            # Bounded decompression: a small gzip bomb cannot grow past the limit.
            out += decoder.decompress(chunk, max_bytes + 1 - len(out))
        if len(out) > max_bytes:
            raise too_large
    if decoder is not None:
        out += decoder.flush()
        if len(out) > max_bytes:
            raise too_large
    return bytes(out)


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:g} MB" if n >= 1024 * 1024 else f"{n} bytes"
