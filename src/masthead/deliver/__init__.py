"""Delivery of the email edition: the outbox, the SMTP engine, rate limits, retries, resume.

:func:`send_issue` is the whole of ``masthead send`` without the terminal: it creates the
send (one outbox row per recipient, in one transaction), puts back rows a dead sender left in
flight, and runs :class:`~masthead.deliver.engine.Sender` until every row is finished, the
send is paused, or a fatal error (server unreachable, sender refused) stops it.

States of an outbox row and the policy for each:

* ``pending``: due at ``next_attempt_at`` (or at once);
* ``sending``: claimed by one sender, under a lease; only the SMTP answer moves it on;
* ``sent``: the server accepted the message (2xx after the data);
* ``failed``: a 5xx answer (a refused *address* also suppresses it: ``hard bounce``), or 4xx
  answers for longer than ``[smtp] retry_max_hours``;
* ``unknown``: the connection was lost after the whole message was written and before the
  answer. Not resent automatically, because it may have been delivered; ``masthead send
  --resend-unknown`` sends them again (accepting a possible duplicate);
* ``suppressed``: the reader left (unsubscribed, bounced, complained) before their message
  went out.

A sender that is killed leaves its claimed rows in ``sending``; the next run puts them back
to ``pending`` and sends them (a process of this host that is gone is noticed at once;
otherwise the lease of ``SendPolicy.lease`` seconds runs out first). Those rows, and only
those, may arrive twice: their messages were in flight when the sender died.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SendError, SmtpError
from ..model import Issue, Publication
from ..store import Store
from .engine import Progress, RunStats, Sender, SendPolicy
from .outbox import SendState, count_recipients, create_send, recover, send_state, set_paused
from .smtp import Outcome, SmtpConnection, SmtpSettings

__all__ = [
    "RunStats",
    "SendPolicy",
    "SendReport",
    "SendState",
    "count_recipients",
    "create_send",
    "issue_entry",
    "policy_from_config",
    "send_issue",
    "send_state",
    "send_test",
    "set_paused",
    "smtp_settings",
    "template_cache",
]


def smtp_settings(pub: Publication) -> SmtpSettings:
    """``[smtp]`` as connection settings; the password comes from ``password_env``."""
    c = pub.config.smtp
    password = ""
    if c.username:
        password = os.environ.get(c.password_env, "")
        if not password:
            raise SmtpError(
                f"[smtp] username is set but ${c.password_env} is empty",
                fix=f"export {c.password_env}=… (the password is never written in the file)",
            )
    return SmtpSettings(
        host=c.host,
        port=c.port,
        security=c.security,
        username=c.username,
        password=password,
        timeout=c.timeout,
    )


def policy_from_config(pub: Publication, **overrides: Any) -> SendPolicy:
    c = pub.config.smtp
    values: dict[str, Any] = {
        "concurrency": c.concurrency,
        "rate_per_minute": c.rate_per_minute,
        "rate_per_domain_per_minute": c.rate_per_domain_per_minute,
        "max_age": c.retry_max_hours * 3600,
        "lease": c.lease_seconds,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SendPolicy(**values)


def issue_entry(pub: Publication, slug: str) -> dict[str, Any]:
    """The issue's entry in ``_site/manifest.json`` (the email links to the built editions)."""
    path = pub.site_dir / "manifest.json"
    for entry in _manifest_issues(pub, path):
        if entry.get("slug") == slug:
            return entry
    raise SendError(
        f"issue {slug} is not built: the email links to its web and PDF editions",
        path=path,
        fix=f"run `masthead build {pub.root} --issue {slug}` (and publish _site/) first",
    )


def _manifest_issues(pub: Publication, path: Path) -> list[dict[str, Any]]:
    """The manifest's ``issues`` (none when it is missing); a manifest that cannot be read
    or is not shaped as ``masthead build`` writes it (damaged, edited by hand, a folder) is
    a SendError naming the file, not a traceback."""
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:  # a folder, unreadable, not UTF-8, not JSON
        raise _damaged_manifest(pub, path, str(exc)) from exc
    issues = manifest.get("issues", []) if isinstance(manifest, dict) else None
    if not isinstance(issues, list):
        raise _damaged_manifest(pub, path, 'not an object with an "issues" list')
    for entry in issues:
        editions = entry.get("editions", {}) if isinstance(entry, dict) else None
        if not isinstance(editions, dict) or not all(
            isinstance(e, dict) for e in editions.values()
        ):
            raise _damaged_manifest(pub, path, f"an issue entry is not an object: {entry!r:.80}")
    return issues


def _damaged_manifest(pub: Publication, path: Path, why: str) -> SendError:
    return SendError(
        f"the site manifest is damaged ({why})",
        path=path,
        fix=f"run `masthead build {pub.root}` to write it again",
    )


def edition_languages(pub: Publication) -> list[str]:
    """The languages the email is made in: the main one first."""
    main = getattr(pub.config, "main_language", pub.config.language)
    others = set(getattr(pub.config, "languages", None) or []) - {main}
    return [main, *sorted(others)]


def template_cache(pub: Publication, issue: Issue | str, entry: dict[str, Any]):  # type: ignore[no-untyped-def]
    """``templates(language)``: the issue's message template per reader language, rendered
    on first use. ``issue`` is the loaded issue or its slug: then every edition, the main
    one too, is loaded from the content folder only when it is rendered."""
    from ..content import load_issue
    from ..render.email.message import build_template

    slug = issue if isinstance(issue, str) else issue.slug

    pdf_path = entry.get("pdf")
    attach = bool(pdf_path and pub.config.email.attach_pdf)
    cache: dict[str | None, Any] = {}

    def pdf_bytes(path: str) -> bytes | None:
        # read only when an edition is rendered: a resumed send reads its stored snapshot
        # and needs no PDF (one deleted from _site/ since must not stop it)
        if not attach:
            return None
        try:
            return (pub.site_dir / path).read_bytes()
        except OSError as exc:
            raise SendError(
                f"the PDF to attach cannot be read ({exc.strerror})",
                path=pub.site_dir / path,
                fix=f"run `masthead build {pub.root} --issue {slug}` to make it again",
            ) from exc

    main, *_ = languages = edition_languages(pub)
    editions = set(languages)

    def templates(language: str | None):  # type: ignore[no-untyped-def]
        # a reader whose language has no edition of this publication reads the main one
        lang = language if language in editions else main
        if lang not in cache:
            if lang == main and not isinstance(issue, str):
                edition = issue
            else:
                edition = load_issue(pub, slug, None if lang == main else lang)
            edition_pdf = entry.get("editions", {}).get(lang, {}).get("pdf") or pdf_path
            cache[lang] = build_template(
                pub,
                edition,
                pdf_path=edition_pdf,
                pdf_bytes=pdf_bytes(edition_pdf),
                lang=lang,
                web_path=_web_folder(entry, lang, main),
            )
        return cache[lang]

    return templates


def _web_folder(entry: dict[str, Any], lang: str, main: str) -> str | None:
    """The folder of the issue's web edition in ``lang``, from the manifest's ``html`` path
    (``2020-03/index.html`` → ``2020-03/``); None: the default ``<slug>/``."""
    edition = entry if lang == main else entry.get("editions", {}).get(lang, {})
    html = edition.get("html")
    if not isinstance(html, str) or "/" not in html:
        return None
    return html.rsplit("/", 1)[0] + "/"


@dataclass
class SendReport:
    run: RunStats
    state: SendState
    recovered: int
    """Rows put back to pending that were in flight (without an answer) when their sender
    stopped: their messages may arrive twice."""
    replayed: int = 0
    """Answers of dead senders recorded from their journals (never sent again)."""


def send_issue(
    pub: Publication,
    store: Store,
    issue: Issue | str,
    *,
    policy: SendPolicy | None = None,
    settings: SmtpSettings | None = None,
    progress: Progress | None = None,
    resend_unknown: bool = False,
    resume: bool = True,
) -> SendReport:
    """Send (or go on sending) ``issue`` to its outbox; the send must exist
    (:func:`create_send`). Returns this run's figures and the send's state. ``resume``
    lifts a pause first (an editor running ``masthead send`` again); a worker started by a
    timer passes False, so a paused send stays paused. ``issue`` may be given by its slug
    alone: it is then loaded from the content folder only if the send's editions are not
    stored yet (a send that has begun goes on with its folder archived or broken)."""
    from .snapshot import send_templates

    slug = issue if isinstance(issue, str) else issue.slug
    entry = issue_entry(pub, slug)
    # Every edition rendered (or read back) before any claim: a broken template fails here,
    # and every reader of the send gets the issue as it was when the send started.
    templates = send_templates(
        pub, store, slug, template_cache(pub, issue, entry), edition_languages(pub)
    )
    settings = settings or smtp_settings(pub)
    policy = policy or policy_from_config(pub)
    if resume:
        set_paused(store, slug, False)
    from .engine import send_message_id_parts
    from .journal import replay

    # What dead senders of this machine heard from the server, before their rows go back.
    replayed = replay(pub, store, slug, send_message_id_parts(pub, slug))
    from ..store.backup import backups
    from .journal import prune_finished

    copies = backups(pub)
    prune_finished(pub, copies[0].stat().st_mtime if copies else None)
    recovered = recover(store, slug, resend_unknown=resend_unknown)
    from .outbox import mark_finished, mark_started

    mark_started(store, slug)
    sender = Sender(pub, store, slug, templates, settings, policy, progress)
    run = asyncio.run(sender.run())
    run.recovered += recovered  # at the start, and rows taken over from a dead sender since
    state = send_state(store, slug)
    if state.remaining == 0:
        mark_finished(store, slug)
    return SendReport(run=run, state=state, recovered=run.recovered, replayed=replayed.answers)


def send_test(pub: Publication, issue: Issue, address: str) -> Outcome:
    """One message of ``issue`` to ``address``, outside the outbox (nothing is recorded)."""
    from ..render.email.message import Recipient, make_message_id, sender_address

    entry = issue_entry(pub, issue.slug)
    template = template_cache(pub, issue, entry)(None)
    sender = sender_address(pub)
    base = pub.config.base_url
    import secrets

    recipient = Recipient(
        email=address,
        name="",
        unsubscribe_url=f"{base}unsubscribe?test=1",
        unsubscribe_mailto=f"mailto:{sender.addr_spec}?subject=test",
        message_id=make_message_id(issue.slug, "test", secrets.token_hex(6), sender.domain),
    )
    data = template.wire(recipient)
    outcomes: list[Outcome] = []

    async def run() -> None:
        conn = SmtpConnection(smtp_settings(pub))
        await conn.open()

        async def one():  # type: ignore[no-untyped-def]
            yield ("test", sender.addr_spec, address, data)

        await conn.send_many(one(), lambda _key, outcome: outcomes.append(outcome))
        await conn.close()

    asyncio.run(run())
    return outcomes[0]
