"""A real HTTP server on 127.0.0.1 for the clip tests: pages, redirects and misbehaviour
(slow, huge, trickling) you set per path; it records every request it receives."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up (size or time limit reached) is expected here


class PageServer:
    """``with PageServer() as server: server.page("/a", "<p>hi</p>"); server.url("/a")``"""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[Seen] = []
        self.stop = threading.Event()
        outer = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests.append(
                    Seen(self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                route = outer.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                route(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = _Server((host, 0), RequestHandler)
        self.port = self.httpd.server_address[1]
        # a short poll interval: shutdown() waits for it, once per test
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> PageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths_seen(self) -> list[str]:
        return [r.path for r in self.requests]

    # routes ----------------------------------------------------------------------------

    def page(
        self,
        path: str,
        body: bytes | str,
        content_type: str = "text/html; charset=utf-8",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body

        def send(h: BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                h.send_header(key, value)
            h.end_headers()
            h.wfile.write(data)

        self.routes[path] = send
        return self.url(path)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        def send(h: BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Location", location)
            h.send_header("Content-Length", "0")
            h.end_headers()

        self.routes[path] = send
        return self.url(path)

    def handler(self, path: str, fn: Handler) -> str:
        self.routes[path] = fn
        return self.url(path)
