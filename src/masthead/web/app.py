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
  pending subscriber and sends the confirmation email; limited per IP address.
- ``GET  /healthz``: ``ok`` when the database answers.
- ``/admin/``: the editor's app (:mod:`masthead.web.admin`), behind a login.
- everything else: the static files of ``_site/``.

A bad or swapped token gets 403 and the same page as an unknown subscriber (404 would
tell a prober which ids exist).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..content import load_publication
from ..errors import MailError, SubscriberError
from ..i18n import catalogue
from ..model import Publication
from ..store import Store, open_store
from ..store import subscriber_list as subs
from ..store.tokens import check_token, token_issued
from .pages import button_form, page, subscribe_form
from .ratelimit import TokenBucket

log = logging.getLogger("masthead.serve")

MAX_FORM_BYTES = 10_000
URLENCODED = "application/x-www-form-urlencoded"


@dataclass
class Endpoints:
    """The state the endpoints share: the publication, its database, the rate limits."""

    pub: Publication
    store: Store
    per_ip: TokenBucket
    per_address: TokenBucket

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

    def invalid_link(self) -> Response:
        return self.render("link_invalid", [], status_code=403)

    def _verified(self, request: Request, purpose: str) -> subs.Subscriber | None:
        subscriber_id = request.path_params["id"]
        token = request.path_params["token"]
        with self.store.read() as conn:
            row = subs.get(conn, subscriber_id)
            suppressed_at = subs.suppressed_since(conn, row.email) if row is not None else None
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

    async def unsubscribe(self, request: Request) -> Response:
        subscriber = await run_in_threadpool(self._verified, request, "unsubscribe")
        if subscriber is None:
            return self.invalid_link()
        fmt = {"publication": self.pub.config.name, "email": subscriber.email}
        if request.method == "POST":
            await _read_small_body(request)
            ip = client_ip(request)
            await run_in_threadpool(
                subs.unsubscribe, self.store, subscriber.id, source="email", ip=ip
            )
            log.info("unsubscribed #%s from %s", subscriber.id, ip)
            return self.render("unsubscribe_title", [self.words["unsubscribed_done"].format(**fmt)])
        form = button_form(request.url.path, self.words["unsubscribe_button"], one_click=True)
        question = self.words["unsubscribe_question"].format(**fmt)
        return self.render("unsubscribe_title", [question], form=form)

    # ---- confirm ----------------------------------------------------------------------

    async def confirm(self, request: Request) -> Response:
        subscriber = await run_in_threadpool(self._verified, request, "confirm")
        if subscriber is None:
            return self.invalid_link()
        fmt = {"publication": self.pub.config.name, "email": subscriber.email}
        if request.method == "POST":
            await _read_small_body(request)
            ip = client_ip(request)
            await run_in_threadpool(subs.confirm, self.store, subscriber.id, source="form", ip=ip)
            log.info("confirmed #%s from %s", subscriber.id, ip)
            return self.render("confirm_title", [self.words["confirmed_done"].format(**fmt)])
        if subscriber.status == "active" and not subscriber.suppressed:
            return self.render("confirm_title", [self.words["confirmed_done"].format(**fmt)])
        form = button_form(request.url.path, self.words["confirm_button"])
        return self.render(
            "confirm_title", [self.words["confirm_question"].format(**fmt)], form=form
        )

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
        name = (fields.get("name") or [""])[0][:200]
        language = (fields.get("language") or [""])[0][:35] or None
        trap = (fields.get("website") or [""])[0]
        if trap:  # the hidden field: a bot; say the usual thing, do nothing
            return self._check_mail(email)
        try:
            result = await run_in_threadpool(
                subs.add, self.store, email, name=name, language=language, source="form", ip=ip
            )
        except SubscriberError as exc:
            reason = self.words["subscribe_invalid"].format(reason=exc.message)
            form_html = subscribe_form(action, self.words, email)
            return self.render("subscribe_title", [reason], form=form_html, status_code=400)
        if result.needs_confirmation and self.per_address.allow(result.subscriber.email.lower()):
            try:
                await run_in_threadpool(_send_one, self.pub, result.subscriber)
            except MailError as exc:
                log.error("confirmation email to #%s not sent: %s", result.subscriber.id, exc)
                return PlainTextResponse("mail server unavailable", status_code=503)
        # The same answer whether or not the address was on the list: nothing leaks.
        return self._check_mail(result.subscriber.email)

    def _check_mail(self, email: str) -> Response:
        return self.render(
            "subscribe_title", [self.words["subscribe_check_mail"].format(email=email)]
        )

    async def healthz(self, request: Request) -> Response:
        await run_in_threadpool(self.store.version)
        return PlainTextResponse("ok")


class SiteFiles(StaticFiles):
    """The built site; before the first build every path is a 404 (not a server error)."""

    async def check_config(self) -> None:
        if self.directory is not None and Path(self.directory).is_dir():
            await super().check_config()


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


def create_app(
    directory: Path | str,
    *,
    subscribe_per_minute: float = 2.0,
    subscribe_burst: float = 5.0,
) -> Starlette:
    """The ASGI app for the publication in ``directory``."""
    pub = load_publication(Path(directory))
    store = open_store(pub)
    endpoints = Endpoints(
        pub=pub,
        store=store,
        per_ip=TokenBucket(subscribe_burst, subscribe_per_minute),
        per_address=TokenBucket(2, 1 / 10),  # one confirmation email per address per 10 min
    )
    public = [
        Route("/unsubscribe/{id:int}/{token:str}", endpoints.unsubscribe, methods=["GET", "POST"]),
        Route("/confirm/{id:int}/{token:str}", endpoints.confirm, methods=["GET", "POST"]),
        Route("/subscribe", endpoints.subscribe, methods=["GET", "POST"]),
        Mount("/", app=SiteFiles(directory=pub.site_dir, html=True, check_dir=False)),
    ]
    prefix = base_path(pub)
    from .admin import admin_routes

    # The editor's app (login required) lives at /admin/, outside base_url's path.
    routes: list[Any] = [Route("/healthz", endpoints.healthz), admin_routes(pub.root, store)]
    if prefix:
        routes.append(Route("/", lambda request: RedirectResponse(prefix + "/")))
        routes.append(Mount(prefix, routes=public))
    else:
        routes.extend(public)
    app = Starlette(routes=routes)
    app.state.endpoints = endpoints
    return app
