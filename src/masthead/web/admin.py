"""The editor's app under ``/admin/``: dashboard, issues and items, print preview, sending,
subscribers. Server-rendered Jinja2 pages, a little plain JavaScript (``static/admin.js``)
for drag and drop, live previews and progress; every page works without it.

Every page needs a login (:mod:`masthead.web.auth`); every POST needs the session's CSRF
token. The files of the publication folder stay the source of truth
(:mod:`masthead.web.files`).
"""

from __future__ import annotations

import io
import logging
import mimetypes
import re
import tempfile
from collections.abc import Awaitable, Callable
from functools import wraps
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..config import KINDS
from ..content import load_issue, load_publication, parse_markdown
from ..errors import MastheadError
from ..model import Publication
from ..store import Store, open_store
from ..store import subscriber_list as subs
from ..subscriber_status import LIST_STATUSES
from . import files
from .auth import Session, Sessions, configured_hash, csrf_ok, verify_password
from .pages import FILE_HEADERS
from .preview import PrintPreviews
from .ratelimit import TokenBucket
from .sending import Sends

log = logging.getLogger("masthead.serve")

MAX_REQUEST_BYTES = files.MAX_IMAGE_BYTES + 1024 * 1024
LOGIN_FORM_BYTES = 64 * 1024
"""The most an unauthenticated login request may send."""
BUILD_WAIT_SECONDS = 60.0
"""How long the Build button waits behind another build of the publication."""
ADMIN_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
FAILED_LOGINS_BURST = 20
FAILED_LOGINS_PER_MINUTE = 10
"""Wrong passwords accepted from all addresses together: 20 at once, then 10 a minute; past
that every login waits (the editor too, for a minute or two: the price of a cap no number of
addresses gets around)."""
GLOBAL = "*"
MAX_PREVIEW_BYTES = 200_000
"""The largest Markdown the live preview renders (an item is a few thousand characters)."""

Handler = Callable[..., Awaitable[Response]]


def _package_dir(name: str) -> Path:
    return Path(str(resources.files(__package__).joinpath(name)))


class Admin:
    """The editor's app for one publication folder."""

    def __init__(self, root: Path, store: Store) -> None:
        self.root = Path(root)
        self.store = store
        pub = self.pub
        self.sessions = Sessions(pub)
        self.login_limit = TokenBucket(5, 5)  # 5 tries at once, then 5 a minute per address
        # Failed logins from all addresses together: many addresses (a botnet, IPv6) each
        # under the per-address limit could otherwise try ~5 passwords a minute apiece.
        self.failed_logins = TokenBucket(FAILED_LOGINS_BURST, FAILED_LOGINS_PER_MINUTE)
        self.previews = PrintPreviews(self.root)
        self.sends = Sends(self.root)
        self.flashes: dict[str, list[tuple[str, str]]] = {}
        self.env = Environment(
            loader=FileSystemLoader(str(_package_dir("templates"))),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    @property
    def pub(self) -> Publication:
        """The publication, read again on every request (the editor may change its files)."""
        return load_publication(self.root)

    # ---- plumbing ------------------------------------------------------------------------

    def flash(self, session: Session, message: str, kind: str = "ok") -> None:
        if len(self.flashes) > 1000:  # messages nobody came back for
            self.flashes.clear()
        self.flashes.setdefault(session.csrf, []).append((kind, message))

    def page(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        session: Session | None = getattr(request.state, "session", None)
        pub = self.pub
        html = self.env.get_template(template).render(
            pub=pub,
            csrf=session.csrf if session else "",
            logged_in=bool(session and session.user),
            flashes=self.flashes.pop(session.csrf, []) if session else [],
            site_prefix=_site_prefix(pub),
            path=request.url.path,
            **context,
        )
        response = HTMLResponse(html, status_code=status_code, headers=ADMIN_HEADERS)
        if session is not None and getattr(request.state, "new_session", False):
            self.sessions.save(request, response, session)
        return response

    def redirect(self, url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})

    def guarded(self, handler: Handler) -> Handler:
        """Login required; POSTs need the CSRF token; the form is parsed once, here."""

        @wraps(handler)
        async def wrapper(request: Request) -> Response:
            session = self.sessions.load(request)
            request.state.session = session
            if session is None or not session.user:
                if request.method == "GET":
                    return self.redirect("/admin/login?next=" + quote(request.url.path))
                return PlainTextResponse("log in first", status_code=403)
            form = None
            if request.method == "POST":
                form = await _read_form(request)
                if isinstance(form, Response):
                    return form
                sent = request.headers.get("x-csrf-token") or form.get("csrf")
                if not csrf_ok(session, sent if isinstance(sent, str) else None):
                    await form.close()
                    return PlainTextResponse(
                        "the form's security token is missing or stale: reload the page "
                        "and try again",
                        status_code=403,
                    )
                request.state.form = form
            try:
                return await handler(request)
            except files.EditError as exc:
                status = 404 if isinstance(exc, files.NotFound) else 400
                return self.page(request, "message.html", status, title="Not done", error=exc)
            finally:
                if form is not None:
                    await form.close()  # uploads are spooled to temporary files

        return wrapper

    # ---- login ---------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        session = self.sessions.load(request)
        if session is None:
            session = self.sessions.new()
            request.state.new_session = True
        request.state.session = session
        pub = self.pub
        stored = configured_hash(pub)
        next_url = request.query_params.get("next", "/admin/")
        if not next_url.startswith("/admin/") or next_url.startswith("//"):
            next_url = "/admin/"
        if not stored:
            return self.page(request, "nopassword.html", 503, title="Set a password first")
        if request.method == "GET":
            return self.page(request, "login.html", title="Log in", next=next_url)
        # Before a login nobody is trusted with more than a login form's few bytes.
        form = await _read_form(request, limit=LOGIN_FORM_BYTES)
        if isinstance(form, Response):
            return form
        try:
            return await self._log_in(request, session, form, stored, next_url)
        finally:
            await form.close()

    async def _log_in(
        self, request: Request, session: Any, form: FormData, stored: str, next_url: str
    ) -> Response:
        if not csrf_ok(session, _field(form, "csrf")):
            return self.page(
                request,
                "login.html",
                403,
                title="Log in",
                next=next_url,
                error="The form was stale; please try again.",
            )
        ip = request.client.host if request.client else "?"
        if not self.login_limit.allow(ip) or not self.failed_logins.peek(GLOBAL):
            return self.page(
                request,
                "login.html",
                429,
                title="Log in",
                next=next_url,
                error="Too many attempts; wait a minute and try again.",
            )
        ok = await run_in_threadpool(verify_password, _field(form, "password"), stored)
        if not ok:
            self.failed_logins.allow(GLOBAL)
            log.warning("failed editor login from %s", ip)
            return self.page(
                request, "login.html", 401, title="Log in", next=next_url, error="Wrong password."
            )
        log.info("editor logged in from %s", ip)
        fresh = self.sessions.new(user=True)  # a new token: the one seen before login dies
        response = self.redirect(next_url)
        self.sessions.save(request, response, fresh)
        return response

    async def logout(self, request: Request) -> Response:
        self.sessions.end_all()
        response = self.redirect("/admin/login")
        self.sessions.clear(response)
        return response

    # ---- dashboard -----------------------------------------------------------------------

    async def dashboard(self, request: Request) -> Response:
        from .dashboard import (
            delivery_chart,
            issue_rows,
            last_send,
            subscriber_chart,
            weekly_changes,
        )

        pub = self.pub

        def gather() -> dict[str, Any]:
            rows = issue_rows(pub, self.store)
            return {
                "issues": rows,
                "counts": subs.counts(self.store),
                "last": last_send(self.store),
                "subscriber_svg": subscriber_chart(weekly_changes(self.store)),
                "delivery_svg": delivery_chart(rows),
            }

        data = await run_in_threadpool(gather)
        return self.page(
            request, "dashboard.html", title="Dashboard", statuses=LIST_STATUSES, **data
        )

    async def new_issue(self, request: Request) -> Response:
        from ..scaffold import new_issue

        made = await run_in_threadpool(new_issue, self.root)
        self.flash(
            request.state.session,
            f"Made issue {made.slug}: vol. {made.volume}, no. {made.number}.",
        )
        return self.redirect(f"/admin/issues/{made.slug}")

    # ---- an issue ------------------------------------------------------------------------

    def _folder(self, request: Request) -> Path:
        slug = request.path_params["slug"]
        pub = self.pub
        if slug not in pub.issue_slugs:
            raise files.NotFound(f"there is no issue {slug!r}", fix="the dashboard lists them")
        folder = pub.issues_dir / slug
        if folder.is_symlink() or folder.resolve().parent != pub.issues_dir.resolve():
            raise files.LinkRefused(
                f"issue folder {slug}/ is a symbolic link; the editor's app does not follow links",
                path=folder,
                fix="replace the link by the folder itself",
            )
        return folder

    async def issue(self, request: Request) -> Response:
        folder = self._folder(request)
        slug = folder.name
        items = []
        for name in files.print_order(folder):
            try:
                item = files.read_item(folder / name)
                # only what the list shows, as text: front matter is the author's, so a
                # `name:` key or a list for a title must not steer or break the page
                title, kind = item.meta.get("title"), item.meta.get("kind")
                items.append(
                    {
                        "name": name,
                        "title": title if isinstance(title, str) and title else name,
                        "kind": kind if isinstance(kind, str) else None,
                    }
                )
            except Exception as exc:  # a broken file must not hide the others
                items.append({"name": name, "title": name, "error": str(exc)})
        problem = None
        try:
            issue = await run_in_threadpool(load_issue, self.pub, slug)
            config = issue.config
            warnings = issue.warnings
        except MastheadError as exc:
            problem, config, warnings = str(exc), None, []
        built = (self.pub.site_dir / slug / "index.html").is_file()
        return self.page(
            request,
            "issue.html",
            title=f"Issue {slug}",
            slug=slug,
            items=items,
            config=config,
            problem=problem,
            warnings=warnings,
            kinds=KINDS,
            built=built,
            trash=request.query_params.get("undo"),
        )

    async def add_item(self, request: Request) -> Response:
        folder = self._folder(request)
        form = request.state.form
        title = _field(form, "title").strip()
        if not title:
            raise files.EditError("give the new item a title")
        name = await run_in_threadpool(
            files.new_item, folder, title, _field(form, "kind") or "article"
        )
        self.flash(request.state.session, f"Added {name}.")
        return self.redirect(f"/admin/issues/{folder.name}/items/{name.removesuffix('.md')}")

    async def clip_item(self, request: Request) -> Response:
        from ..content.clip import clip

        folder = self._folder(request)
        form = request.state.form
        url = _field(form, "url").strip()
        kind = _field(form, "kind") or "reprint"
        if not re.match(r"^https?://", url, re.IGNORECASE):
            # `masthead clip` also reads saved files: never from a web form (files of the server)
            raise files.EditError(f"{url!r} is not a web address", fix="paste an https:// address")
        try:
            report = await run_in_threadpool(clip, url, self.root, issue=folder.name, kind=kind)
        except MastheadError as exc:
            raise files.EditError(exc.message, fix=exc.fix) from None
        path = getattr(report, "path", None)
        self.flash(request.state.session, f"Clipped {url}.")
        if path is not None:
            return self.redirect(f"/admin/issues/{folder.name}/items/{Path(path).stem}")
        return self.redirect(f"/admin/issues/{folder.name}")

    async def order(self, request: Request) -> Response:
        folder = self._folder(request)
        names = [str(n) for n in request.state.form.getlist("items")]
        await run_in_threadpool(files.write_order, folder, names)
        if request.headers.get("x-csrf-token"):
            return JSONResponse({"items": files.print_order(folder)})
        return self.redirect(f"/admin/issues/{folder.name}")

    async def move(self, request: Request) -> Response:
        folder = self._folder(request)
        form = request.state.form
        offset = -1 if _field(form, "direction") == "up" else 1
        name = _field(form, "name")
        order = await run_in_threadpool(files.move, folder, name, offset)
        if request.headers.get("x-csrf-token"):
            return JSONResponse({"items": order})
        return self.redirect(f"/admin/issues/{folder.name}#item-{name.removesuffix('.md')}")

    async def delete_item(self, request: Request) -> Response:
        folder = self._folder(request)
        name = request.path_params["name"]
        trash_id = await run_in_threadpool(files.delete_item, folder, name)
        self.flash(request.state.session, f"Deleted {name}.md.")
        return self.redirect(f"/admin/issues/{folder.name}?undo={quote(trash_id)}")

    async def restore_item(self, request: Request) -> Response:
        folder = self._folder(request)
        name = await run_in_threadpool(files.restore, folder, _field(request.state.form, "trash"))
        self.flash(request.state.session, f"Restored {name}.")
        return self.redirect(f"/admin/issues/{folder.name}")

    async def build_issue(self, request: Request) -> Response:
        from ..build import build

        folder = self._folder(request)
        try:
            # Behind another build (the CLI's, or another tab's) a request waits a while,
            # then says who holds the lock rather than hold a worker thread for ever.
            report = await run_in_threadpool(
                build, self.root, issue=folder.name, wait=BUILD_WAIT_SECONDS
            )
        except MastheadError as exc:
            raise files.EditError(f"the build failed: {exc.message}", fix=exc.fix) from None
        for warning in getattr(report, "warnings", [])[:5]:
            self.flash(request.state.session, str(warning), "warning")
        self.flash(request.state.session, f"Built issue {folder.name}.")
        back = _field(request.state.form, "back")
        if back.startswith("/admin/"):
            return self.redirect(back)
        return self.redirect(f"/admin/issues/{folder.name}")

    # ---- an item -------------------------------------------------------------------------

    async def item(self, request: Request) -> Response:
        folder = self._folder(request)
        path = files.item_path(folder, request.path_params["name"])
        if not path.is_file():
            return self.page(
                request, "message.html", 404, title="No such item", error="No such item."
            )
        item = files.read_item(path)
        conflict = None
        form_values = _values_from_meta(item.meta)
        body = item.body
        if request.method == "POST":
            form = request.state.form
            meta = files.form_meta(_fields(form))
            body = _field(form, "body")
            base = _field(form, "hash")
            try:
                new_hash = await run_in_threadpool(files.save_item, path, meta, body, base)
            except files.EditConflict as exc:
                conflict = exc
                form_values = _fields(form)
                item = files.read_item(path)
            except MastheadError as exc:
                return self.page(
                    request,
                    "item.html",
                    400,
                    **self._item_context(folder, path, item.hash, _fields(form), body),
                    error=exc,
                )
            else:
                self.flash(request.state.session, f"Saved {path.name}.")
                if request.headers.get("x-csrf-token"):
                    return JSONResponse({"hash": new_hash})
                return self.redirect(request.url.path)
        context = self._item_context(folder, path, item.hash, form_values, body)
        return self.page(
            request,
            "item.html",
            409 if conflict else 200,
            conflict=conflict,
            theirs=item.text if conflict else None,
            **context,
        )

    def _item_context(
        self, folder: Path, path: Path, hash_: str, values: dict[str, Any], body: str
    ) -> dict[str, Any]:
        from ..render.web.tree import render_blocks

        preview = render_blocks(parse_markdown(body), _image_url(folder.name))
        return {
            "title": f"Edit {path.name}",
            "slug": folder.name,
            "name": path.stem,
            "hash": hash_,
            "values": values,
            "body": body,
            "kinds": KINDS,
            "preview": preview,
            "images": sorted(
                p.name
                for p in folder.iterdir()
                if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".gif", ".webp"}
            ),
        }

    async def markdown_preview(self, request: Request) -> Response:
        from ..render.web.tree import render_blocks

        form = request.state.form
        slug = _field(form, "slug")
        body = _field(form, "body")
        if len(body.encode("utf-8")) > MAX_PREVIEW_BYTES:
            return PlainTextResponse(
                f"the text is over {MAX_PREVIEW_BYTES // 1000} KB, too long to preview; "
                "split it into several items",
                status_code=413,
                headers=ADMIN_HEADERS,
            )

        def render() -> str:  # parsing is CPU work: off the event loop, other requests go on
            return str(render_blocks(parse_markdown(body), _image_url(slug)))

        return HTMLResponse(await run_in_threadpool(render), headers=ADMIN_HEADERS)

    async def upload_image(self, request: Request) -> Response:
        folder = self._folder(request)
        name = request.path_params["name"]
        form = request.state.form
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise files.EditError("choose an image file to upload")
        data = await upload.read(files.MAX_IMAGE_BYTES + 1)
        try:
            await run_in_threadpool(
                files.save_image,
                folder,
                name,
                data,
                _field(form, "alt"),
                _field(form, "caption"),
                _field(form, "hash"),
            )
        except files.EditConflict as exc:
            raise files.EditError(exc.message, fix="reload the page, then upload again") from None
        self.flash(request.state.session, "Image added as the item's lead image.")
        return self.redirect(f"/admin/issues/{folder.name}/items/{name}")

    async def issue_file(self, request: Request) -> Response:
        folder = self._folder(request)
        name = request.path_params["file"]
        path = folder / name
        if (
            "/" in name
            or name.startswith(".")
            or path.suffix.lower() not in {".png", ".jpg", ".jpeg", ".gif", ".webp"}
        ):
            return PlainTextResponse("not found", status_code=404)
        data = await run_in_threadpool(files.read_own_file, folder, path)
        if data is None:
            return PlainTextResponse("not found", status_code=404)
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Response(data, media_type=media, headers=FILE_HEADERS)

    # ---- print preview -------------------------------------------------------------------

    async def print_page(self, request: Request) -> Response:
        folder = self._folder(request)
        preview = await run_in_threadpool(self.previews.get, folder.name)
        return self.page(
            request,
            "print.html",
            title=f"Print preview of {folder.name}",
            slug=folder.name,
            preview=preview,
        )

    async def print_json(self, request: Request) -> Response:
        folder = self._folder(request)
        preview = await run_in_threadpool(self.previews.get, folder.name)
        return JSONResponse(preview.summary(), headers={"Cache-Control": "no-store"})

    async def print_png(self, request: Request) -> Response:
        folder = self._folder(request)
        preview = self.previews.cached(folder.name)
        n = int(request.path_params["n"])
        if preview is None or preview.fingerprint != request.path_params["fp"]:
            return PlainTextResponse("this preview is gone; reload", status_code=404)
        if not 1 <= n <= len(preview.pages):
            return PlainTextResponse("no such page", status_code=404)
        return Response(
            preview.pages[n - 1],
            media_type="image/png",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    async def print_pdf(self, request: Request) -> Response:
        from ..render.print.pdf import render_print_edition

        folder = self._folder(request)

        def render() -> bytes:
            pub = self.pub
            return render_print_edition(pub, load_issue(pub, folder.name)).pdf

        try:
            pdf = await run_in_threadpool(render)
        except MastheadError as exc:
            raise files.EditError(exc.message, fix=exc.fix) from None
        return Response(
            pdf,
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'attachment; filename="{folder.name}.pdf"',
                "Cache-Control": "no-store",
            },
        )

    # ---- sending -------------------------------------------------------------------------

    async def send_page(self, request: Request) -> Response:
        from ..deliver import count_recipients

        folder = self._folder(request)
        slug = folder.name
        built = (self.pub.site_dir / "manifest.json").is_file() and slug in _built_slugs(self.pub)
        status = await run_in_threadpool(self.sends.status, self.store, slug)
        recipients = await run_in_threadpool(count_recipients, self.store)
        return self.page(
            request,
            "send.html",
            title=f"Send issue {slug}",
            slug=slug,
            built=built,
            status=status,
            recipients=recipients,
            test_result=request.query_params.get("test"),
        )

    async def send_test(self, request: Request) -> Response:
        from ..deliver import send_test

        folder = self._folder(request)
        address = _field(request.state.form, "address").strip()
        if "@" not in address or any(c in address for c in "\r\n<>,; "):
            raise files.EditError(f"{address!r} is not an email address")

        def run() -> Any:
            pub = self.pub
            return send_test(pub, load_issue(pub, folder.name), address)

        try:
            outcome = await run_in_threadpool(run)
        except MastheadError as exc:
            raise files.EditError(exc.message, fix=exc.fix) from None
        state = getattr(outcome, "state", "?")
        detail = f"{getattr(outcome, 'code', '')} {getattr(outcome, 'message', '')}".strip()
        if state == "sent":
            self.flash(request.state.session, f"Test email sent to {address} ({detail}).")
        else:
            self.flash(
                request.state.session, f"Test email to {address}: {state} ({detail}).", "error"
            )
        return self.redirect(f"/admin/issues/{folder.name}/send")

    async def send_start(self, request: Request) -> Response:
        from ..deliver import issue_entry

        folder = self._folder(request)
        if _field(request.state.form, "confirm") != "yes":
            raise files.EditError(
                "the send was not confirmed", fix="tick the box that confirms the send"
            )
        try:
            issue_entry(self.pub, folder.name)
        except MastheadError as exc:
            raise files.EditError(exc.message, fix=exc.fix) from None
        started = self.sends.start(folder.name)
        self.flash(
            request.state.session,
            "Sending started." if started else "A send of this issue is already running.",
        )
        return self.redirect(f"/admin/issues/{folder.name}/send")

    async def send_pause(self, request: Request) -> Response:
        folder = self._folder(request)
        await run_in_threadpool(self.sends.pause, self.store, folder.name)
        self.flash(request.state.session, "Paused: messages in flight finish, no new ones start.")
        return self.redirect(f"/admin/issues/{folder.name}/send")

    async def send_json(self, request: Request) -> Response:
        folder = self._folder(request)
        status = await run_in_threadpool(self.sends.status, self.store, folder.name)
        return JSONResponse(status, headers={"Cache-Control": "no-store"})

    # ---- subscribers ---------------------------------------------------------------------

    async def subscribers(self, request: Request) -> Response:
        q = request.query_params.get("q", "").strip().lower()
        status = request.query_params.get("status") or None
        if status not in LIST_STATUSES:
            status = None

        def gather() -> tuple[list[Any], dict[str, int]]:
            found = []
            for s in subs.iter_subscribers(self.store, status):
                if not q or q in s.email.lower() or q in s.name.lower():
                    found.append(s)
                    if len(found) >= 500:
                        break
            return found, subs.counts(self.store)

        found, counts = await run_in_threadpool(gather)
        return self.page(
            request,
            "subscribers.html",
            title="Subscribers",
            found=found,
            counts=counts,
            q=q,
            status=status or "",
            statuses=LIST_STATUSES,
            report=None,
        )

    async def subscriber_add(self, request: Request) -> Response:
        form = request.state.form
        confirmed = _field(form, "confirmed") == "yes"
        try:
            result = await run_in_threadpool(
                subs.add,
                self.store,
                _field(form, "email"),
                name=_field(form, "name"),
                confirmed=confirmed,
                source="api",
            )
        except MastheadError as exc:
            raise files.EditError(exc.message, fix=exc.fix) from None
        s = result.subscriber
        self.flash(request.state.session, f"Added {s.email} ({s.status}).")
        if result.needs_confirmation:
            await self._confirm_mail(request.state.session, [s])
        return self.redirect("/admin/subscribers")

    async def _confirm_mail(self, session: Session, pending: list[Any]) -> None:
        from ..store.confirm import send_confirmations

        if not pending:
            return
        try:
            report = await run_in_threadpool(send_confirmations, self.pub, pending)
        except MastheadError as exc:
            self.flash(session, f"No confirmation email could be sent: {exc.message}", "error")
            return
        if report.sent:
            self.flash(session, f"Sent {len(report.sent)} confirmation email(s).")
        for address, reason in report.failed:
            self.flash(session, f"No confirmation email to {address}: {reason}", "error")

    async def subscriber_import(self, request: Request) -> Response:
        form = request.state.form
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise files.EditError("choose a CSV file to import")
        data = await upload.read(20 * 1024 * 1024)
        confirmed = _field(form, "confirmed") == "yes"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "import.csv"
            path.write_bytes(data)
            try:
                report = await run_in_threadpool(
                    subs.import_csv, self.store, path, confirmed=confirmed
                )
            except MastheadError as exc:
                raise files.EditError(exc.message, fix=exc.fix) from None
        session = request.state.session
        self.flash(session, f"Imported {report.imported:,} address(es); {len(report.bad)} skipped.")
        await self._confirm_mail(session, report.to_confirm)
        found = list(subs.iter_subscribers(self.store))[:500]
        return self.page(
            request,
            "subscribers.html",
            title="Subscribers",
            found=found,
            counts=subs.counts(self.store),
            q="",
            status="",
            statuses=LIST_STATUSES,
            report=report,
        )

    async def subscriber_export(self, request: Request) -> Response:
        out = io.StringIO()
        await run_in_threadpool(subs.export_csv, self.store, out, None)
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": 'attachment; filename="subscribers.csv"',
                "Cache-Control": "no-store",
            },
        )

    async def subscriber_suppress(self, request: Request) -> Response:
        form = request.state.form
        email = _field(form, "email").strip()
        reason = _field(form, "reason") or "manual"
        if not email:
            raise files.EditError("give the address to suppress")
        try:
            await run_in_threadpool(subs.suppress, self.store, email, reason, source="api")
        except MastheadError as exc:
            raise files.EditError(exc.message, fix=exc.fix) from None
        self.flash(request.state.session, f"Suppressed {email} ({reason}).")
        return self.redirect("/admin/subscribers")

    async def subscriber(self, request: Request) -> Response:
        sid = int(request.path_params["id"])
        with self.store.read() as conn:
            row = subs.get(conn, sid)
            reason = subs.suppression_reason(conn, row.email) if row is not None else None
        if row is None:
            return self.page(
                request, "message.html", 404, title="No such subscriber", error="Not found."
            )
        events = await run_in_threadpool(subs.history, self.store, sid)
        return self.page(
            request,
            "subscriber.html",
            title=f"Subscriber {row.email}",
            s=subs.Subscriber.from_row(row, reason),
            events=events,
        )

    # ---- routes --------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        g = self.guarded
        issue = "/issues/{slug:str}"
        item = issue + "/items/{name:str}"
        return [
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", g(self.logout), methods=["POST"]),
            Route("/", g(self.dashboard)),
            Route("/issues/new", g(self.new_issue), methods=["POST"]),
            Route(issue, g(self.issue)),
            Route(issue + "/items", g(self.add_item), methods=["POST"]),
            Route(issue + "/clip", g(self.clip_item), methods=["POST"]),
            Route(issue + "/order", g(self.order), methods=["POST"]),
            Route(issue + "/move", g(self.move), methods=["POST"]),
            Route(issue + "/restore", g(self.restore_item), methods=["POST"]),
            Route(issue + "/build", g(self.build_issue), methods=["POST"]),
            Route(issue + "/files/{file:str}", g(self.issue_file)),
            Route(issue + "/print", g(self.print_page)),
            Route(issue + "/print.json", g(self.print_json)),
            Route(issue + "/print.pdf", g(self.print_pdf)),
            Route(issue + "/print/{fp:str}/{n:id}.png", g(self.print_png)),
            Route(issue + "/send", g(self.send_page)),
            Route(issue + "/send.json", g(self.send_json)),
            Route(issue + "/send/test", g(self.send_test), methods=["POST"]),
            Route(issue + "/send/start", g(self.send_start), methods=["POST"]),
            Route(issue + "/send/pause", g(self.send_pause), methods=["POST"]),
            Route(item, g(self.item), methods=["GET", "POST"]),
            Route(item + "/delete", g(self.delete_item), methods=["POST"]),
            Route(item + "/image", g(self.upload_image), methods=["POST"]),
            Route("/markdown-preview", g(self.markdown_preview), methods=["POST"]),
            Route("/subscribers", g(self.subscribers)),
            Route("/subscribers/add", g(self.subscriber_add), methods=["POST"]),
            Route("/subscribers/import", g(self.subscriber_import), methods=["POST"]),
            Route("/subscribers/suppress", g(self.subscriber_suppress), methods=["POST"]),
            Route("/subscribers/export.csv", g(self.subscriber_export)),
            Route("/subscribers/{id:id}", g(self.subscriber)),
            Mount("/static", app=StaticFiles(directory=str(_package_dir("static")))),
        ]


def admin_routes(root: Path, store: Store | None = None) -> Mount:
    """The editor's app, to mount at ``/admin``."""
    store = store or open_store(load_publication(root))
    admin = Admin(root, store)
    return Mount("/admin", routes=admin.routes())


# ---- small helpers ----------------------------------------------------------------------


async def _read_form(request: Request, limit: int = MAX_REQUEST_BYTES) -> FormData | Response:
    """The request's form, refusing a body over ``limit`` bytes however it is sent: by its
    Content-Length, or counted as it arrives (a chunked body has none)."""
    too_large = PlainTextResponse("request too large", status_code=413)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        return too_large
    if not (length and length.isdigit()):
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return too_large
            chunks.append(chunk)
        request._body = b"".join(chunks)  # what request.form() reads from now on
    try:
        return await request.form(max_files=2, max_fields=200, max_part_size=2 * 1024 * 1024)
    except Exception as exc:  # malformed multipart bodies
        return PlainTextResponse(f"unreadable form: {exc}", status_code=400)


def _field(form: FormData, key: str) -> str:
    value = form.get(key)
    return value if isinstance(value, str) else ""


def _fields(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _values_from_meta(meta: dict[str, Any]) -> dict[str, str]:
    values = {}
    for key, value in meta.items():
        if isinstance(value, list):
            values[key] = "\n".join(str(v) for v in value)
        elif value is None:
            values[key] = ""
        else:
            values[key] = str(value)
    return values


def _image_url(slug: str) -> Callable[[str], str | None]:
    def url(src: str) -> str | None:
        if ":" in src or "/" in src:
            return None
        return f"/admin/issues/{quote(slug)}/files/{quote(src)}"

    return url


def _site_prefix(pub: Publication) -> str:
    from .app import base_path

    return base_path(pub)


def _built_slugs(pub: Publication) -> set[str]:
    from .dashboard import _manifest

    return set(_manifest(pub))


__all__ = ["Admin", "admin_routes"]
