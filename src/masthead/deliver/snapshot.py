"""A send's email, fixed when the send starts.

The email used to be rendered from the content folder by each run, each language on first
use: an edit made during a send reached the readers mailed after it (all 1,000 Persian
readers of one run got an edited text), and an edit that no longer rendered stopped the run
with a batch of rows left in ``sending``.

Now the first run of a send renders every language edition before it claims a row and
stores them in the ``send_editions`` table; every later run, on any machine, reads them
back. So every reader of one send gets the same issue, and a broken edit cannot stop a send
that has begun. The DKIM key is not stored: it is the operator's, read at each run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..render.email.message import MessageTemplate, load_dkim_key
from ..store import dialect_insert, send_editions

if TYPE_CHECKING:
    from ..model import Publication
    from ..store import Store

Templates = Callable[[str | None], MessageTemplate]


def _pack(template: MessageTemplate) -> tuple[str, bytes]:
    layout: list[list[Any]] = []
    body = bytearray()
    for segment in template.segments:
        if isinstance(segment, bytes):
            layout.append(["b", len(segment)])
            body += segment
        else:
            layout.append(["s", segment])
    return json.dumps(layout), bytes(body)


def _unpack(layout: str, body: bytes) -> list[bytes | str]:
    segments: list[bytes | str] = []
    at = 0
    for kind, value in json.loads(layout):
        if kind == "b":
            segments.append(body[at : at + value])
            at += value
        else:
            segments.append(str(value))
    return segments


def _stored(store: Store, issue_slug: str) -> list[Any]:
    with store.read() as conn:
        return list(
            conn.execute(select(send_editions).where(send_editions.c.issue_slug == issue_slug))
        )


def has_snapshot(store: Store, issue_slug: str) -> bool:
    """Whether the send of ``issue_slug`` has its editions stored (its first run made them):
    every later run sends them, and needs neither the content folder nor the built PDF."""
    with store.read() as conn:
        row = conn.execute(
            select(send_editions.c.language).where(send_editions.c.issue_slug == issue_slug)
        ).first()
    return row is not None


def send_templates(
    pub: Publication, store: Store, issue_slug: str, render: Templates, languages: list[str]
) -> Templates:
    """``templates(language)`` for the send of ``issue_slug``: the editions stored when the
    send started; on its first run, ``render`` makes them (each of ``languages``, the first
    the main one) and they are stored first. Two workers starting at once store one set: the
    first committed."""
    rows = _stored(store, issue_slug)
    if not rows:
        made = {lang: render(lang) for lang in languages}  # all of them, before any claim
        with store.begin() as conn:
            for lang, template in made.items():
                layout, body = _pack(template)
                conn.execute(
                    dialect_insert(conn.dialect.name, send_editions)
                    .values(
                        issue_slug=issue_slug,
                        language=lang,
                        subject=template.subject,
                        layout=layout,
                        body=body,
                        size=template.size,
                    )
                    .on_conflict_do_nothing()
                )
        rows = _stored(store, issue_slug)
    dkim = load_dkim_key(pub)
    editions = {
        row.language: MessageTemplate(
            subject=row.subject,
            segments=_unpack(row.layout, bytes(row.body)),
            dkim=dkim,
            size=row.size,
        )
        for row in rows
    }
    main = languages[0] if languages[0] in editions else next(iter(editions))

    def templates(language: str | None) -> MessageTemplate:
        return editions.get(language or main) or editions[main]

    return templates
