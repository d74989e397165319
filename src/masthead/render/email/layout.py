"""What the email edition shows, as plain data: the stage between the model and the HTML
and text renderers (both render exactly the same :class:`EditionData`)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from ...config import Kind
from ...i18n import catalogue, format_long_date, format_month_year
from ...model import Issue, Item, Publication

RTL_LANGUAGES = {"ar", "fa", "he", "ur", "ps", "yi", "ckb", "dv"}

# Words the email edition adds; i18n/<lang>.toml may translate them (same keys).
EMAIL_WORDS = {
    "view_in_browser": "View in your browser",
    "pdf_edition": "Print edition (PDF)",
    "unsubscribe": "Unsubscribe",
    "unsubscribe_note": "You receive this because you subscribed to {name}.",
    "image": "Image",
}


@dataclass(frozen=True)
class ItemData:
    slug: str
    kind: str
    title: str
    byline: str
    """"By A and B · The Valley Post · February 20, 2020" (empty when there is nothing to say)."""
    summary: str | None
    image: dict[str, str] | None
    body: list[dict[str, Any]]
    source_line: tuple[str, str] | None
    """(label, url): "Source:" for reprints and briefs, "Link to the source for full article:"
    for excerpts."""
    letter_date: str = ""
    to: tuple[str, ...] = ()
    salutation: str | None = None
    signed: tuple[str, ...] = ()


@dataclass(frozen=True)
class EditionData:
    name: str
    tagline: str
    lang: str
    dir: str
    subject: str
    preheader: str
    issue_line: str
    issue_title: str | None
    web_url: str
    pdf_url: str | None
    labels: dict[str, str]
    items: list[ItemData]
    footer_lines: list[str]


def clean_line(text: str) -> str:
    """One line of text safe for a header or a preview line: control characters, line and
    paragraph separators become spaces and runs of white space collapse."""
    if text.isprintable():  # the common case: no control or separator characters (fast)
        return " ".join(text.split())
    chars = [" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text]
    return " ".join("".join(chars).split())


def join_names(names: list[str], labels: dict[str, str]) -> str:
    return labels.get("list_separator", ", ").join(names)  # as the print edition writes them


def _item(item: Item, issue: Issue, labels: dict[str, str], lang: str) -> ItemData:
    m = item.meta
    published = format_long_date(m.published, lang) if m.published else None
    parts: list[str] = []
    if m.authors:
        parts.append(f"{labels['by']} {join_names(m.authors, labels)}")
    if m.kind in (Kind.reprint, Kind.excerpt) or (m.kind == Kind.article and m.source):
        parts += [p for p in (m.source, published) if p]
    source_line = None
    if m.source_url:
        label = labels["full_article"] if m.kind == Kind.excerpt else labels["source"] + ":"
        if m.kind != Kind.article and m.kind != Kind.letter:
            source_line = (label, m.source_url)
    image = None
    if m.image:
        image = {"src": m.image, "alt": m.image_alt or "", "caption": m.caption or ""}
    return ItemData(
        slug=item.slug,
        kind=m.kind.value,
        title=m.title,
        byline=" · ".join(parts) if m.kind != Kind.letter else "",
        summary=m.summary,
        image=image,
        body=item.body,
        source_line=source_line,
        letter_date=format_long_date(m.published or issue.date, lang),
        to=tuple(m.to),
        salutation=m.salutation,
        signed=tuple(m.signed),
    )


def edition_data(
    pub: Publication,
    issue: Issue,
    *,
    pdf_path: str | None = None,
    lang: str | None = None,
    web_path: str | None = None,
) -> EditionData:
    """The email edition of ``issue`` as data; ``pdf_path`` and ``web_path`` are the manifest's
    paths of the PDF and the web edition's folder (relative to ``base_url``; the web edition
    defaults to ``<slug>/``); ``lang`` the reader's language (default: the publication's)."""
    lang = lang or getattr(issue, "lang", None) or pub.config.language
    localized = getattr(pub.config, "localized", None)
    c = localized(lang) if localized is not None else pub.config
    labels = EMAIL_WORDS | catalogue(lang)
    labels["unsubscribe_note"] = labels["unsubscribe_note"].replace("{name}", c.name)
    issue_line = " · ".join(
        [
            labels["volume_number"].format(volume=issue.volume, number=issue.number),
            format_month_year(issue.date, lang),
        ]
    )
    subject = f"{c.name}: {issue_line}"
    if issue.title:
        subject += f" — {issue.title}"
    email_config = getattr(c, "email", None)
    preheader = getattr(email_config, "preheader", None) or next(
        (i.meta.summary for i in issue.items if i.meta.summary),
        " · ".join(i.title for i in issue.items),
    )
    publisher = c.publisher
    footer = [
        line
        for line in (
            publisher.name or c.name,
            ", ".join(publisher.address),
            publisher.website or "",
        )
        if line
    ]
    return EditionData(
        name=c.name,
        tagline=c.tagline,
        lang=lang,
        dir="rtl" if lang.split("-")[0].lower() in RTL_LANGUAGES else "ltr",
        subject=clean_line(subject),
        preheader=clean_line(preheader),
        issue_line=issue_line,
        issue_title=issue.title,
        web_url=f"{c.base_url}{web_path or issue.slug + '/'}",
        pdf_url=f"{c.base_url}{pdf_path}" if pdf_path else None,
        labels=labels,
        items=[_item(item, issue, labels, lang) for item in issue.items],
        footer_lines=footer,
    )
