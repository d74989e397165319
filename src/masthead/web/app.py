"""The ASGI app of ``masthead serve``: the built web edition plus the public endpoints.

Routes, under the path of ``base_url`` (so the links in emails work whatever host serves
them):

- ``GET  unsubscribe/<id>/<token>``: a page with a button; changes nothing (mail scanners
  fetch links).
- ``POST unsubscribe/<id>/<token>``: unsubscribes at once and answers 200 (RFC 8058
  one-click, body ``List-Unsubscribe=One-Click``, or the page's button).
- ``GET  confirm/<id>/<token>``: a page with a button; ``POST`` confirms the subscription
  (recording the time and the IP address).
- ``GET  subscribe``: a sign-up form; ``POST subscribe`` (``email``, ``name``) creates a
  pending subscriber and sends the confirmation email after the answer has gone out (so a
  new address and a known one are answered alike, in the same time); limited per IP address.
- ``GET  /healthz``: liveness, for a proxy or an orchestrator: 200 ``ok`` when the
  database answers, else 503 ``database unavailable`` (the driver's error goes to the log,
  never to the client: it can name hosts, users and paths).
- ``GET  /readyz``: readiness: 200 ``ready`` only when the database answers, its schema is
  at :data:`masthead.store.LATEST` (neither behind nor ahead: an instance of another
  Masthead version must not take traffic) and the built site is present; else 503 with the
  reason on one line. Both are outside ``base_url``'s path, uncached (``Cache-Control:
  no-store``), cheap (one small query) and never rate-limited.
- ``/admin/``: the editor's app (:mod:`masthead.web.admin`), behind a login; left out by
  ``create_app(..., public_only=True)`` (``masthead serve --public-only``).
- everything else: the static files of ``_site/``.

Several instances (processes or machines) can serve one publication behind a load balancer:
everything the public endpoints know is in the database, and the tokens and the editor's
session cookie are signed with the publication's secret (give every instance the same
``MASTHEAD_SECRET``). The per-IP sign-up limit is kept in memory, per process (N instances
allow N times as much; a proxy's own limit, e.g. nginx ``limit_req``, is the global one); the
confirmation emails to one address (two in 10 minutes) are counted in the database, so that
limit holds across instances. On SQLite the writes of one machine's instances queue on a
lock file (:mod:`masthead.web.writes`).

A bad or swapped token gets 403 and the same page as an unknown subscriber (404 would
tell a prober which ids exist).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

import anyio.to_thread
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..content import load_publication
from ..errors import MailError, MastheadError, SubscriberError
from ..headers import MAX_NAME_LENGTH
from ..i18n import catalogue
from ..model import Publication
from ..render.web.site import CSP_SEARCH
from ..store import (
    LATEST,
    Store,
    consent_events,
    current_version,
    database_error_line,
    open_store,
    utcnow,
)
from ..store import subscriber_list as subs
from ..store.tokens import check_token, token_issued, verify_secret
from . import routing  # noqa: F401  (the {id:id} path parameter)
from .pages import FILE_HEADERS, button_form, page, subscribe_form
from .ratelimit import TokenBucket
from .writes import checkpoint_in_background, write_queue

log = logging.getLogger("masthead.serve")

MAX_FORM_BYTES = 10_000
URLENCODED = "application/x-www-form-urlencoded"
CONFIRMATIONS_PER_ADDRESS = 2
"""Sign-ups of one address within :data:`CONFIRMATION_WINDOW` that get a confirmation email;
more are answered as usual but mail nothing (nobody can flood an inbox through the form)."""
CONFIRMATION_WINDOW = timedelta(minutes=10)
PROBE_HEADERS = {"Cache-Control": "no-store"}
DB_THREADS = 4
"""Worker threads of one process using the database at once (SQLAlchemy pools 5)."""
T = TypeVar("T")


@dataclass
class Endpoints:
    """The state the endpoints share: the publication, its database, the rate limit."""

    pub: Publication
    store: Store
    per_ip: TokenBucket
    limiter: anyio.CapacityLimiter = field(default_factory=lambda: _limiter(DB_THREADS))
    writes: AbstractContextManager[Any] = field(default_factory=nullcontext)
    """Held around each write transaction: on SQLite a :class:`~masthead.web.writes.
    WriteQueue`, so writers wait their turn instead of polling SQLite's busy handler."""
    secret_checked: bool = False
    """Whether this machine's secret was found to be the database's (see
    :func:`masthead.store.tokens.verify_secret`)."""

    @property
    def words(self) -> dict[str, str]:
        return catalogue(self.pub.config.language)

    def render(self, title_key: str, paragraphs: list[str], **kwargs: Any) -> Response:
        return page(
            self.words[title_key],
            paragraphs,
            lang=self.pub.config.language,
            publication=self.pub.config.name,
            **kwargs,
        )

    async def _db(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function`` (which uses the database) in a worker thread, at most
        :data:`DB_THREADS` at once: more would only wait for a pooled connection, or open
        and close connections beyond the pool on every request."""
        call = functools.partial(function, *args)
        return await anyio.to_thread.run_sync(call, limiter=self.limiter)

    def invalid_link(self) -> Response:
        return self.render("link_invalid", [], status_code=403)

    def _verified(self, request: Request, purpose: str) -> subs.Subscriber | None:
        subscriber_id = request.path_params["id"]
        token = request.path_params["token"]
        with self.store.read() as conn:
            row = subs.get(conn, subscriber_id)
            suppressed_at = None
            if purpose == "confirm" and row is not None:
                suppressed_at = subs.suppressed_since(conn, row.email)
        if row is None or not check_token(self.pub, purpose, row.id, row.email, token):
            return None
        if purpose == "confirm" and suppressed_at is not None:
            # A confirmation link mailed before the address was suppressed (an old mail
            # found again) does not undo the unsubscription: only a new sign-up's link does.
            issued = token_issued(token) or 0
            if issued < int(suppressed_at.timestamp()):
                return None
        return subs.Subscriber.from_row(row)

    # ---- unsubscribe ------------------------------------------------------------------

    def _unsubscribe(self, request: Request, ip: str | None) -> subs.Subscriber | None:
        """Check the link and unsubscribe in one transaction (the one-click POST is the
        request a send brings by the thousand: one connection, one commit)."""
        token = request.path_params["token"]
        with self.writes, self.store.begin() as conn:
            row = subs.get(conn, request.path_params["id"])
            if row is None or not check_token(self.pub, "unsubscribe", row.id, row.email, token):
                return None
            return subs.unsubscribe_row(conn, row, source="email", ip=ip)

    async def unsubscribe(self, request: Request) -> Response:
        if request.method == "POST":
            await _read_small_body(request)
            ip = client_ip(request)
            subscriber = await self._db(self._unsubscribe, request, ip)
            if subscriber is None:
                return self.invalid_link()
            log.info("unsubscribed #%s from %s", subscriber.id, ip)
            fmt = {"publication": self.pub.config.name, "email": subscriber.email}
            return self.render("unsubscribe_title", [self.words["unsubscribed_done"].format(**fmt)])
        subscriber = await self._db(self._verified, request, "unsubscribe")
        if subscriber is None:
            return self.invalid_link()
        fmt = {"publication": self.pub.config.name, "email": subscriber.email}
        form = button_form(request.url.path, self.words["unsubscribe_button"], one_click=True)
        question = self.words["unsubscribe_question"].format(**fmt)
        return self.render("unsubscribe_title", [question], form=form)

    # ---- confirm ----------------------------------------------------------------------

    async def confirm(self, request: Request) -> Response:
        subscriber = await self._db(self._verified, request, "confirm")
        if subscriber is None:
            return self.invalid_link()
        fmt = {"publication": self.pub.config.name, "email": subscriber.email}
        if request.method == "POST":
            await _read_small_body(request)
            ip = client_ip(request)
            await self._db(self._confirm, subscriber.id, ip)
            log.info("confirmed #%s from %s", subscriber.id, ip)
            return self.render("confirm_title", [self.words["confirmed_done"].format(**fmt)])
        if subscriber.status == "active" and not subscriber.suppressed:
            return self.render("confirm_title", [self.words["confirmed_done"].format(**fmt)])
        form = button_form(request.url.path, self.words["confirm_button"])
        return self.render(
            "confirm_title", [self.words["confirm_question"].format(**fmt)], form=form
        )

    def _confirm(self, subscriber_id: int, ip: str | None) -> None:
        with self.writes:
            subs.confirm(self.store, subscriber_id, source="form", ip=ip)

    # ---- subscribe --------------------------------------------------------------------

    async def subscribe(self, request: Request) -> Response:
        action = request.url.path
        if request.method == "GET":
            return self.render("subscribe_title", [], form=subscribe_form(action, self.words))
        ip = client_ip(request)
        if not self.per_ip.allow(ip or "?"):
            return self.render(
                "subscribe_title", [self.words["too_many_requests"]], status_code=429
            )
        body = await _read_small_body(request)
        if not request.headers.get("content-type", "").startswith(URLENCODED):
            return PlainTextResponse(f"send the form as {URLENCODED}", status_code=415)
        try:
            fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
        except ValueError:
            return PlainTextResponse("too many form fields", status_code=400)
        email = (fields.get("email") or [""])[0].strip()[:320]
        name = (fields.get("name") or [""])[0][:MAX_NAME_LENGTH]
        language = (fields.get("language") or [""])[0][:35] or None
        trap = (fields.get("website") or [""])[0]
        if trap:  # the hidden field: a bot; say the usual thing, do nothing
            return self._check_mail(email)
        try:
            result = await self._db(self._add, email, name, language, ip)
        except SubscriberError as exc:
            reason = self.words["subscribe_invalid"].format(reason=exc.message)
            form_html = subscribe_form(action, self.words, email)
            return self.render("subscribe_title", [reason], form=form_html, status_code=400)
        # Both paths ask the database the same question, and neither waits for the mail
        # server: the answer, its status and its timing are the same for a new address and
        # for one already on the list (a prober learns nothing).
        may_mail = await self._db(self._may_mail, result.subscriber.id)
        response = self._check_mail(result.subscriber.email)
        if result.needs_confirmation and may_mail:
            response.background = BackgroundTask(self._send_confirmation, result.subscriber)
        return response

    async def _send_confirmation(self, subscriber: subs.Subscriber) -> None:
        """Send the confirmation email after the answer has gone out; a failure is logged
        (the reader can sign up again; ``masthead subscribers resend`` resends)."""
        try:
            await run_in_threadpool(_send_one, self.pub, subscriber)
        except MastheadError as exc:
            log.error("confirmation email to #%s not sent: %s", subscriber.id, exc.message)

    def _add(self, email: str, name: str, language: str | None, ip: str | None) -> subs.AddResult:
        with self.writes:
            return subs.add(self.store, email, name=name, language=language, source="form", ip=ip)

    def _check_mail(self, email: str) -> Response:
        return self.render(
            "subscribe_title", [self.words["subscribe_check_mail"].format(email=email)]
        )

    def _may_mail(self, subscriber_id: int) -> bool:
        """Whether this sign-up may send a confirmation email: counted from the sign-ups
        the database recorded (shared by every instance), not from memory."""
        since = utcnow() - CONFIRMATION_WINDOW
        c = consent_events.c
        query = (
            select(func.count())
            .where(c.subscriber_id == subscriber_id)
            .where(c.action == "subscribe")
            .where(c.source == "form")
            .where(c.at >= since)
        )
        with self.store.read() as conn:
            return (conn.execute(query).scalar() or 0) <= CONFIRMATIONS_PER_ADDRESS

    # ---- probes for a proxy or an orchestrator -----------------------------------------

    def _schema_version(self) -> int:
        with self.store.read() as conn:
            return current_version(conn)

    async def healthz(self, request: Request) -> Response:
        """Liveness: the database answers."""
        try:
            await self._db(self._schema_version)
        except SQLAlchemyError as exc:
            return _database_unavailable(exc)
        return _probe(200, "ok")

    async def readyz(self, request: Request) -> Response:
        """Readiness: the database answers at this Masthead's schema, the site is built."""
        try:
            version = await self._db(self._schema_version)
        except SQLAlchemyError as exc:
            return _database_unavailable(exc)
        if version != LATEST:
            fix = "run `masthead db upgrade`" if version < LATEST else "upgrade Masthead"
            return _probe(
                503,
                f"database schema is at version {version}, this Masthead needs {LATEST}: {fix}",
            )
        if not self.secret_checked:  # an instance started before `masthead db upgrade`
            try:
                await self._db(verify_secret, self.store, self.pub)
            except MastheadError as exc:  # names another machine: for the log only
                log.error("probe: %s", exc.message)
                return _probe(503, "signing secret differs from the database's (see the log)")
            self.secret_checked = True
        if not (self.pub.site_dir / "index.html").is_file():
            log.error("probe: no built site in %s", self.pub.site_dir)
            return _probe(503, "no built site: run `masthead build`")
        return _probe(200, "ready")


def _limiter(threads: int) -> anyio.CapacityLimiter:
    return anyio.CapacityLimiter(threads)


def _database_unavailable(exc: SQLAlchemyError) -> Response:
    """503 without the driver's text (it can name hosts, users, paths): that goes to the log."""
    log.error("probe: database unavailable: %s", database_error_line(exc))
    return _probe(503, "database unavailable")


def _probe(status_code: int, text: str) -> Response:
    return PlainTextResponse(text, status_code=status_code, headers=PROBE_HEADERS)


PAGE_HEADERS = {
    "Content-Security-Policy": CSP_SEARCH + "; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
}
"""The built pages' own policy (they carry it in a meta tag too), as a header."""
ASSET_TYPES = ("text/html", "text/javascript", "application/javascript", "text/css")
UNSANDBOXED = ("application/wasm", "application/pdf")
"""Pagefind's worker script and WebAssembly need their scripts; a sandboxed PDF would not be
shown by the browser's viewer."""


class SiteFiles(StaticFiles):
    """The built site; before the first build every path is a 404 (not a server error).

    Every response carries a Content-Security-Policy for its type (:data:`FILE_HEADERS`,
    :data:`PAGE_HEADERS`); the redirect of a folder to its slash is relative, so it never
    names the host the request claimed."""

    async def check_config(self) -> None:
        if self.directory is not None and Path(self.directory).is_dir():
            await super().check_config()

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        if isinstance(response, RedirectResponse):
            segment = scope["path"].rstrip("/").rsplit("/", 1)[-1]
            query = scope.get("query_string", b"").decode("latin-1")
            location = quote(segment) + "/" + (f"?{query}" if query else "")
            return RedirectResponse(location or "./", status_code=response.status_code)
        media = response.headers.get("content-type", "").split(";")[0].strip()
        if media == "text/html":
            response.headers.update(PAGE_HEADERS)
        elif media.startswith(ASSET_TYPES) or media in UNSANDBOXED:
            response.headers["X-Content-Type-Options"] = "nosniff"
        else:
            response.headers.update(FILE_HEADERS)
        return response


def _send_one(pub: Publication, subscriber: subs.Subscriber) -> None:
    from ..store.confirm import send_confirmations

    report = send_confirmations(pub, [subscriber])
    if report.failed:
        raise MailError(report.failed[0][1])


async def _read_small_body(request: Request) -> bytes:
    """The request body, refusing anything larger than a form needs."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            from starlette.exceptions import HTTPException

            raise HTTPException(413, "request too large")
    return body


def client_ip(request: Request) -> str | None:
    """The client's address (uvicorn puts a trusted proxy's X-Forwarded-For here)."""
    return request.client.host if request.client else None


def base_path(pub: Publication) -> str:
    """The path of ``base_url`` without its final slash: "" or e.g. "/bulletin"."""
    return urlsplit(pub.config.base_url).path.rstrip("/")


def _no_slash_redirects(router: Any) -> None:
    router.redirect_slashes = False
    for route in router.routes:
        inner = getattr(route, "app", None)
        if isinstance(route, Mount) and hasattr(inner, "redirect_slashes"):
            _no_slash_redirects(inner)


def create_app(
    directory: Path | str,
    *,
    subscribe_per_minute: float = 2.0,
    subscribe_burst: float = 5.0,
    public_only: bool = False,
    background_checkpoints: bool = False,
) -> Starlette:
    """The ASGI app for the publication in ``directory``; ``public_only`` leaves out the
    editor's app (``/admin/`` is then a 404, like any path the site does not have);
    ``background_checkpoints`` (for a server process, not a test's) moves SQLite's
    checkpoints to a thread (:mod:`masthead.web.writes`)."""
    pub = load_publication(Path(directory))
    # A shared database older than this Masthead: serve, unready, until `masthead db upgrade`
    store = open_store(pub, allow_behind=True)
    endpoints = Endpoints(
        pub=pub, store=store, per_ip=TokenBucket(subscribe_burst, subscribe_per_minute)
    )
    if store.version() == LATEST:
        verify_secret(store, pub)  # a machine with another secret refuses to start
        endpoints.secret_checked = True
    queue = write_queue(store.engine)
    if queue is not None:
        endpoints.writes = queue
        if background_checkpoints:
            checkpoint_in_background(store.engine, queue)
    public = [
        Route("/unsubscribe/{id:id}/{token:str}", endpoints.unsubscribe, methods=["GET", "POST"]),
        Route("/confirm/{id:id}/{token:str}", endpoints.confirm, methods=["GET", "POST"]),
        Route("/subscribe", endpoints.subscribe, methods=["GET", "POST"]),
        Mount("/", app=SiteFiles(directory=pub.site_dir, html=True, check_dir=False)),
    ]
    prefix = base_path(pub)
    routes: list[Any] = [
        Route("/healthz", endpoints.healthz),
        Route("/readyz", endpoints.readyz),
    ]
    if not public_only:
        from .admin import admin_routes

        # The editor's app (login required) lives at /admin/, outside base_url's path.
        routes.append(admin_routes(pub.root, store))
        routes.append(Route("/admin", lambda request: RedirectResponse("/admin/")))
    if prefix:
        to_site = Route("/", lambda request: RedirectResponse(prefix + "/"))
        routes += [to_site, Route(prefix, to_site.endpoint), Mount(prefix, routes=public)]
    else:
        routes.extend(public)
    app = Starlette(routes=routes)
    # Starlette's own slash redirects are absolute, built from the request's Host header:
    # a path without its slash is a 404 here, and every redirect of ours is relative.
    _no_slash_redirects(app.router)
    app.state.endpoints = endpoints
    return app
