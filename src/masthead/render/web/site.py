"""The web edition: the document tree → Jinja2 (autoescaped) → a static site in ``_site/``.

Two stages, hooked into :func:`masthead.build.build`:

- :func:`render_web_issue`, per issue: ``<slug>/index.html`` (the whole issue),
  ``<slug>/<item>/index.html`` (one permalink per item), the item images, and
  ``<slug>/search.json`` (the text ``masthead search`` reads). It adds ``html`` to the issue's
  manifest entry and to each item, and keeps what the site-wide pages need in the entry's
  ``_web`` key, so an unchanged issue is never loaded again.
- :func:`render_web_site`, once per build: the home page with the archive, the publisher
  page, the search page, the feeds, ``sitemap.xml``, the static files and the Pagefind index.

Every link between pages is relative (``../index.html``), so ``_site/`` works from any
sub-path and from a local folder; absolute URLs (canonical, feeds, sitemap, OpenGraph) are
made from ``base_url``.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from markupsafe import Markup

from ...build import write_file
from ...errors import RenderError
from ...i18n import (
    base_language,
    catalogue,
    format_long_date,
    format_month_year,
    localize_digits,
)
from ...model import Issue, Item, Publication
from ..svg import clean_svg
from .tree import figure, href, render_blocks

RTL_LANGUAGES = {"ar", "fa", "he", "ur", "ps", "sd", "ckb", "yi", "dv"}

RESERVED = {"static", "publisher", "search", "pagefind", "feed.xml", "feed.json", "sitemap.xml"}
"""Top-level names the site uses itself; an issue folder may not take them."""

FEED_ISSUES = 20
"""How many of the newest issues the feeds carry."""

LEAD_ITEMS = 3
"""How many items of the latest issue the home page shows with their summaries."""

RASTER = {".png", ".jpg", ".jpeg", ".gif", ".webp"}

_CSP_BASE = (
    "default-src 'self'; script-src 'self'{wasm}; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'"
)
CSP = _CSP_BASE.format(wasm="")
"""The Content-Security-Policy of every page: nothing inline runs, nothing is fetched from
another host."""
CSP_SEARCH = _CSP_BASE.format(wasm=" 'wasm-unsafe-eval'")
"""The search page also runs Pagefind's WebAssembly (from the site itself)."""


# ----------------------------------------------------------------------------------------
# Shared pieces


@cache
def _environment() -> Any:
    from jinja2 import Environment, FileSystemBytecodeCache, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
        # Compiling the templates is a fifth of a cold build; Jinja's per-user cache (a 0700
        # folder it checks it owns) keeps them compiled between runs, keyed by their source.
        bytecode_cache=FileSystemBytecodeCache(),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["jsonld"] = jsonld
    env.filters["href"] = href
    env.globals["CSP"] = CSP
    return env


def _render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def jsonld(data: Any) -> Markup:
    """JSON for a ``<script type="application/ld+json">`` block: ``<``, ``>`` and ``&`` are
    written as ``\\u003c``… so no text in the data can close the element."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


def text_direction(lang: str) -> str:
    """``rtl`` for right-to-left languages (Persian, Arabic, Hebrew…), else ``ltr``."""
    return "rtl" if lang.split("-")[0].lower() in RTL_LANGUAGES else "ltr"


def is_main(pub: Publication) -> bool:
    """Whether ``pub`` is the main language's edition (not one made by :func:`localized`)."""
    return pub.config.language == pub.config.main_language


def localized(pub: Publication, lang: str) -> Publication:
    """The publication as the ``lang`` edition's sub-site (``_site/<lang>/``) sees it: its
    name, tagline and publisher words, its language, and ``base_url`` ending in ``<lang>/``
    (so canonical URLs, feeds and JSON-LD are those of the sub-site)."""
    if lang == pub.config.main_language:
        return pub
    config = pub.config.localized(lang)
    config = config.model_copy(update={"base_url": f"{pub.config.base_url}{lang}/"})
    return dataclasses.replace(pub, config=config)


def site_base(pub: Publication) -> str:
    """The absolute URL of the whole site (the main language's root)."""
    base = pub.config.base_url
    return base if is_main(pub) else base.removesuffix(f"{pub.config.language}/")


def sub_site(pub: Publication) -> str:
    """The sub-site's folder under ``_site/``, with a slash (``fa/``); empty for the main."""
    return "" if is_main(pub) else f"{pub.config.language}/"


@cache
def language_name(lang: str) -> str:
    """The language's own name for itself ("English", "فارسی"), from Babel's CLDR data."""
    from babel import Locale, UnknownLocaleError

    try:
        name = Locale.parse(lang.replace("-", "_")).get_display_name(lang.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return lang
    return name or lang


def language_links(pub: Publication, here: str, versions: dict[str, str]) -> dict[str, Any]:
    """The ``hreflang`` alternates and the visible language switch of one page.

    ``here`` is the page's path under ``_site/`` (``fa/2020-03/index.html``); ``versions``
    maps each language that has this page to its path under ``_site/``. Alternates are
    absolute URLs (with ``x-default`` the main language's page); switch links are relative,
    so they work from any sub-path and from a local folder."""
    if len(versions) < 2:
        return {"alternates": [], "switch": []}
    base = site_base(pub)
    main = pub.config.main_language

    def url(path: str) -> str:
        return base + quote(path.removesuffix("index.html"))

    alternates = [{"hreflang": lang, "href": url(path)} for lang, path in versions.items()]
    if main in versions:
        alternates.append({"hreflang": "x-default", "href": url(versions[main])})
    here_dir = posixpath.dirname(here) or "."
    switch = [
        {
            "lang": lang,
            "dir": text_direction(lang),
            "name": language_name(lang),
            "href": posixpath.relpath(path, here_dir),
        }
        for lang, path in versions.items()
        if lang != pub.config.language
    ]
    return {"alternates": alternates, "switch": switch}


def site_context(pub: Publication) -> dict[str, Any]:
    """What every page template needs about the publication (in the edition's language)."""
    c = pub.config
    return {
        "name": c.name,
        "tagline": c.tagline,
        "lang": c.language,
        "dir": text_direction(c.language),
        "base_url": c.base_url,
        "publisher": c.publisher.model_dump(),
        "L": catalogue(c.language),
        # the static files are shared by every language: a sub-site reaches them one up
        "up": "" if is_main(pub) else "../",
    }


def _periodical(pub: Publication) -> dict[str, Any]:
    c = pub.config
    data: dict[str, Any] = {"@type": "Periodical", "name": c.name, "url": c.base_url}
    if c.tagline:
        data["description"] = c.tagline
    if c.publisher.name:
        data["publisher"] = {"@type": "Organization", "name": c.publisher.name}
        if c.publisher.website:
            data["publisher"]["url"] = c.publisher.website
    return data


def issue_label(pub: Publication, volume: int, number: int) -> str:
    lang = pub.config.language
    label = catalogue(lang)["volume_number"].format(volume=volume, number=number)
    return localize_digits(label, lang)


def pages_text(pub: Publication, pages: list[int] | tuple[int, int]) -> str:
    """ "in print: page 4" / "in print: pages 4–5"; empty when the page is unknown."""
    first, last = [*pages, 0, 0][:2]
    if not first:
        return ""
    lang = pub.config.language
    L = catalogue(lang)
    if last and last != first:
        text = L["web_in_print_pages"].format(first=first, last=last)
    else:
        text = L["web_in_print_page"].format(page=first)
    return localize_digits(text, lang)


def file_size(n: int, lang: str) -> str:
    from babel.numbers import format_decimal

    def number(value: float, pattern: str | None = None) -> str:
        # the language's own separators (Persian ٫ and ٬), then its own digits
        return format_decimal(
            value, format=pattern, locale=lang.replace("-", "_"), numbering_system="default"
        )

    L = catalogue(lang)
    if n < 1024 * 1024:
        text = L["web_size_kb"].format(size=number(max(1, round(n / 1024))))
    else:
        text = L["web_size_mb"].format(size=number(round(n / 1024 / 1024, 1), "#,##0.#"))
    return localize_digits(text, lang)


def pdf_text(entry: dict[str, Any], lang: str) -> str:
    """ "Download the print edition (PDF, 112 KB, 5 pages)", in the edition's language and
    digits."""
    count = localize_digits(str(int(entry.get("page_count", 0))), lang)
    size = file_size(int(entry.get("pdf_bytes", 0)), lang)
    return catalogue(lang)["web_download_pdf"].format(size=size, count=count)


def names(people: list[str], lang: str) -> str:
    if not people:
        return ""
    from babel.lists import format_list

    try:
        return format_list(people, locale=lang.replace("-", "_"))
    except ValueError:
        return ", ".join(people)


# ----------------------------------------------------------------------------------------
# Per issue


@dataclass
class _IssueWeb:
    """What every page of one issue is rendered from."""

    pub: Publication
    issue: Issue
    site: dict[str, Any]
    heading: dict[str, Any]
    """The issue's masthead line, date and PDF link, as the templates show them."""
    url: str
    """The issue's canonical address (from ``base_url``)."""
    images: dict[str, str]
    """Image ``src`` in the items → path of the copy in the issue's web folder."""
    views: list[dict[str, Any]]
    """Each item's template data, in print order."""
    articles: list[dict[str, Any]]
    """Each item's schema.org ``NewsArticle``."""
    issue_ld: dict[str, Any]
    """The issue's schema.org ``PublicationIssue``, its articles as parts."""

    def image_url(self, prefix: str) -> Any:
        """Maps an image ``src`` to its URL from a page ``prefix`` away from the issue folder."""
        return lambda src: (prefix + quote(self.images[src])) if src in self.images else None


def render_web_issue(pub: Publication, issue: Issue, entry: dict[str, Any], out: Path) -> list[str]:
    """Render the issue page, the item permalinks and their images into ``out/<slug>/``
    (another language's edition, ``issue.lang``, into ``out/<lang>/<slug>/``); add ``html``
    to the manifest entry (or the edition's sub-entry) and its items, and ``_web`` for the
    site pages."""
    taken = RESERVED | set(pub.config.edition_languages)
    if issue.slug in taken:
        raise RenderError(
            f"the issue folder name {issue.slug!r} is a name the web site uses itself",
            path=issue.path,
            fix=f"rename the folder (names taken: {', '.join(sorted(taken))})",
        )
    if issue.lang and issue.lang != pub.config.main_language:
        pub = localized(pub, issue.lang)
    here = f"{sub_site(pub)}{issue.slug}"
    folder = out / here
    web = _prepare(pub, issue, entry, _copy_images(issue, folder))
    write_file(folder / "index.html", _issue_page(web))
    for n in range(len(web.views)):
        write_file(folder / web.views[n]["slug"] / "index.html", _item_page(web, n))
    write_file(folder / "search.json", _search_record(issue, web.views, here))
    entry["html"] = f"{here}/index.html"
    for record in entry.get("items", []):
        record["html"] = f"{here}/{record['slug']}/index.html"
    entry["_web"] = _site_record(web)
    return []


def _issue_versions(pub: Publication, issue: Issue, item: str | None = None) -> dict[str, str]:
    """Each language's path under ``_site/`` of this issue's page (or of one item's page):
    the main language's always, another's when the issue (the item) is translated into it."""
    page = f"{item}/index.html" if item else "index.html"
    main = pub.config.main_language
    versions = {main: f"{issue.slug}/{page}"}
    if not is_main(pub):
        versions[pub.config.language] = f"{sub_site(pub)}{issue.slug}/{page}"
        return versions
    for lang in pub.config.edition_languages[1:]:
        items = [i for i in issue.items if item is None or i.slug == item]
        if any(i.path.with_name(f"{i.path.stem}.{lang}.md").is_file() for i in items):
            versions[lang] = f"{lang}/{issue.slug}/{page}"
    return versions


def _prepare(
    pub: Publication, issue: Issue, entry: dict[str, Any], images: dict[str, str]
) -> _IssueWeb:
    site = site_context(pub)
    lang = site["lang"]
    gregorian = pub.config.gregorian_dates  # the Gregorian date too, after a Solar Hijri one
    url = f"{pub.config.base_url}{quote(issue.slug)}/"
    pages = {i["slug"]: i.get("pages", [0, 0]) for i in entry.get("items", [])}
    heading = {
        "slug": issue.slug,
        "label": issue_label(pub, issue.volume, issue.number),
        "date": issue.date.isoformat(),
        "date_text": format_month_year(issue.date, lang, gregorian=gregorian),
        "title": issue.title,
        "label_date": site["L"]["web_issue_date"].format(
            label=issue_label(pub, issue.volume, issue.number),
            date=format_month_year(issue.date, lang, gregorian=gregorian),
        ),
        "pdf": Path(entry["pdf"]).name if entry.get("pdf") else None,
        "pdf_text": pdf_text(entry, lang),
    }
    views = [_item_view(pub, issue, item, pages.get(item.slug, [0, 0])) for item in issue.items]
    part_of = {
        "@type": "PublicationIssue",
        "issueNumber": str(issue.number),
        "datePublished": issue.date.isoformat(),
        "url": url,
        "isPartOf": {
            "@type": "PublicationVolume",
            "volumeNumber": str(issue.volume),
            "isPartOf": _periodical(pub),
        },
    }
    articles = [_article_ld(pub, issue, v, part_of) for v in views]
    issue_ld = {"@context": "https://schema.org", **part_of, "hasPart": articles}
    return _IssueWeb(pub, issue, site, heading, url, images, views, articles, issue_ld)


def _issue_page(web: _IssueWeb) -> str:
    """The whole issue on one page: every item's title an h2 under the masthead's h1."""
    site, heading = web.site, web.heading
    for v in web.views:
        v["body_html"] = _item_body(v, web.image_url(""), shift=1)
    page = {
        "title": f"{site['name']} — {heading['label_date']}",
        "description": web.issue.title or site["tagline"] or site["name"],
        "canonical": web.url,
        "og_type": "website",
        "image": None,
        "jsonld": web.issue_ld,
        **language_links(
            web.pub,
            f"{sub_site(web.pub)}{web.issue.slug}/index.html",
            _issue_versions(web.pub, web.issue),
        ),
    }
    return _render(
        "issue.html", site=site, L=site["L"], root="../", page=page, issue=heading, items=web.views
    )


def _item_page(web: _IssueWeb, n: int) -> str:
    """Item ``n``'s permalink page, with its neighbours in print order."""
    site, heading, views = web.site, web.heading, web.views
    v = views[n]
    v["body_html"] = _item_body(v, web.image_url("../"), shift=0)
    where = site["L"]["web_issue_date"].format(label=site["name"], date=heading["label"])
    page = {
        "title": f"{v['title']} — {where}",
        "description": v["summary"] or v["title"],
        "canonical": f"{web.url}{quote(v['slug'])}/",
        "og_type": "article",
        "image": _og_image(v, web.images, web.url),
        "jsonld": {"@context": "https://schema.org", **web.articles[n]},
        **language_links(
            web.pub,
            f"{sub_site(web.pub)}{web.issue.slug}/{v['slug']}/index.html",
            _issue_versions(web.pub, web.issue, v["slug"]),
        ),
    }
    return _render(
        "item.html",
        site=site,
        L=site["L"],
        root="../../",
        page=page,
        issue=heading,
        item=v,
        prev=views[n - 1] if n > 0 else None,
        next=views[n + 1] if n + 1 < len(views) else None,
    )


def _site_record(web: _IssueWeb) -> dict[str, Any]:
    """What the home page and the feeds need from this issue, kept in the build state so
    they can be written again without loading the issue."""
    absolute = web.image_url(web.url)
    images = web.images
    return {
        "title": web.issue.title,
        "label": web.heading["label"],
        "label_date": web.heading["label_date"],
        "date_text": web.heading["date_text"],
        "items": [
            {
                "slug": v["slug"],
                "title": v["title"],
                "kind": v["kind"],
                "summary": v["summary"],
                "authors": v["authors"],
                "pages_text": v["pages_text"],
                "image": (
                    {"src": images[v["image"]["src"]], "alt": v["image"]["alt"]}
                    if v["image"] and v["image"]["src"] in images
                    else None
                ),
                "feed_html": str(_feed_item(v, absolute, web.url, web.site["L"])),
            }
            for v in web.views
        ],
    }


def _copy_images(issue: Issue, folder: Path | None) -> dict[str, str]:
    """Copy every local image the items use into the issue's web folder (if ``folder`` is
    given); return ``src`` → path inside that folder. Images that are web addresses are left
    out (no outside requests): they are shown as links."""
    root = issue.path.resolve()
    found: dict[str, str] = {}
    sources = [item.meta.image for item in issue.items if item.meta.image]
    from ...content.markdown import walk_blocks

    for item in issue.items:
        sources += [b["src"] for b in walk_blocks(item.body) if b["type"] == "image"]
    for src in sources:
        if src in found or ":" in src.split("/")[0]:
            continue
        path = (root / src).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix.lower() == ".svg":
            data = clean_svg(data)
            if data is None:
                continue  # shown as its alt text; the print stage warned (svg_warnings)
        rel = path.relative_to(root).as_posix()
        found[src] = rel
        if folder is not None:
            write_file(folder / rel, data)
    return found


def _item_view(pub: Publication, issue: Issue, item: Item, pages: list[int]) -> dict[str, Any]:
    """The plain data an item's templates need (no markup yet)."""
    lang = pub.config.language
    gregorian = pub.config.gregorian_dates
    L = catalogue(lang)
    m = item.meta
    kind = m.kind.value
    credit = {"reprint": "web_reprinted_from", "excerpt": "web_excerpt_from"}.get(kind, "web_from")
    return {
        "slug": item.slug,
        "title": m.title,
        "kind": kind,
        "kind_label": L.get(f"web_kind_{kind}", kind),
        "authors": list(m.authors),
        "byline": f"{L['by']} {names(m.authors, lang)}" if m.authors else "",
        "source": m.source,
        "source_url": m.source_url,
        "credit": L[credit] if m.source else "",
        "published": m.published.isoformat() if m.published else None,
        "published_text": format_long_date(m.published, lang, gregorian=gregorian)
        if m.published
        else None,
        "summary": m.summary,
        "image": {"src": m.image, "alt": m.image_alt or "", "caption": m.caption or ""}
        if m.image
        else None,
        "to": list(m.to),
        "salutation": m.salutation,
        "signed": list(m.signed),
        "letter_date": (m.published or issue.date).isoformat(),
        "letter_date_text": format_long_date(m.published or issue.date, lang, gregorian=gregorian),
        "pages": list(pages),
        "pages_text": pages_text(pub, pages),
        "body": item.body,
    }


def _item_body(view: dict[str, Any], image_url: Any, shift: int) -> Markup:
    lead = Markup("")
    if view["image"]:
        i = view["image"]
        lead = figure(i["src"], i["alt"], i["caption"], image_url)
    return lead + render_blocks(view["body"], image_url, heading_shift=shift)


def _og_image(view: dict[str, Any], images: dict[str, str], issue_url: str) -> str | None:
    image = view["image"]
    if not image or image["src"] not in images:
        return None
    rel = images[image["src"]]
    return issue_url + quote(rel) if Path(rel).suffix.lower() in RASTER else None


def _article_ld(
    pub: Publication, issue: Issue, view: dict[str, Any], part_of: dict[str, Any]
) -> dict[str, Any]:
    """schema.org NewsArticle of one item; a reprint or excerpt is ``isBasedOn`` its source."""
    url = f"{part_of['url']}{quote(view['slug'])}/"
    data: dict[str, Any] = {
        "@type": "NewsArticle",
        "headline": view["title"],
        "url": url,
        "datePublished": issue.date.isoformat(),
        "inLanguage": pub.config.language,
        "isPartOf": {"@type": "PublicationIssue", "url": part_of["url"]},
    }
    if view["authors"]:
        data["author"] = [{"@type": "Person", "name": a} for a in view["authors"]]
    if view["summary"]:
        data["description"] = view["summary"]
    if pub.config.publisher.name:
        data["publisher"] = {"@type": "Organization", "name": pub.config.publisher.name}
    if view["kind"] in ("reprint", "excerpt") and view["source_url"]:
        based: dict[str, Any] = {"@type": "CreativeWork", "url": view["source_url"]}
        if view["source"]:
            based["publisher"] = {"@type": "Organization", "name": view["source"]}
        if view["published"]:
            based["datePublished"] = view["published"]
        data["isBasedOn"] = based
    return data


def _feed_item(
    view: dict[str, Any], image_url: Any, issue_url: str, labels: dict[str, str]
) -> Markup:
    """One item as the feeds carry it: absolute links, no classes, no scripts."""
    return Markup(
        _render(
            "feed_item.html",
            item=view,
            url=f"{issue_url}{quote(view['slug'])}/",
            body=_item_body(view, image_url, shift=1),
            L=labels,
        )
    )


def _search_record(issue: Issue, views: list[dict[str, Any]], here: str) -> str:
    """The text ``masthead search`` looks in: one record per item, paragraphs as plain text."""
    from ...content.markdown import paragraphs

    items = []
    for v in views:
        extra = [v["summary"] or "", *v["authors"], v["source"] or ""]
        items.append(
            {
                "slug": v["slug"],
                "title": v["title"],
                "kind": v["kind"],
                "pages": v["pages"],
                "html": f"{here}/{v['slug']}/index.html",
                "text": [t for t in [*extra, *v["to"], *paragraphs(v["body"]), *v["signed"]] if t],
            }
        )
    record = {
        "slug": issue.slug,
        "volume": issue.volume,
        "number": issue.number,
        "date": issue.date.isoformat(),
        "items": items,
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


# ----------------------------------------------------------------------------------------
# Site-wide pages


def render_web_site(
    pub: Publication, entries: list[dict[str, Any]], out: Path, changed: set[str]
) -> list[str]:
    """The home page, publisher and search pages, feeds, sitemap, static files and the
    search index, from every issue's manifest entry (newest first); then the same pages of
    each other language's sub-site (``out/<lang>/``) from the issues that have that edition."""
    from . import feeds

    entries = [e for e in entries if "_web" in e]
    editions = {}
    for lang in pub.config.edition_languages[1:]:
        views = _edition_views(entries, lang)
        if views:
            editions[lang] = views
    languages = [pub.config.main_language, *editions]
    _write_static(pub, out)
    warnings = _render_site_pages(pub, entries, out, languages)
    for lang, views in editions.items():
        lpub, lviews = localized(pub, lang), [v for v, _ in views]
        warnings += _render_site_pages(lpub, lviews, out / lang, languages)
        for view, sub in views:  # what the build state keeps lives in the edition's entry
            for key in ("_web", "_search_part"):
                if key in view:
                    sub[key] = view[key]
                else:
                    sub.pop(key, None)
    for lang in pub.config.edition_languages[1:]:
        if lang not in editions:  # no issue has this edition (any more): no sub-site pages
            for name in ("index.html", *RESERVED - {"static", "sitemap.xml"}):
                _remove_path(out / lang / name)
    editions_web = {lang: [v for v, _ in views] for lang, views in editions.items()}
    write_file(out / "sitemap.xml", feeds.sitemap(pub, entries, editions_web))
    return warnings


def _remove_path(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _edition_views(
    entries: list[dict[str, Any]], lang: str
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The issues that have a ``lang`` edition, as entries of that language's sub-site (paths
    relative to ``_site/<lang>/``), each with the edition's own manifest sub-entry."""
    prefix = f"{lang}/"
    views = []
    for e in entries:
        sub = e.get("editions", {}).get(lang)
        if not sub or "_web" not in sub:
            continue
        view = {
            **sub,
            "slug": e["slug"],
            "volume": e["volume"],
            "number": e["number"],
            "date": e["date"],
            "title": sub["_web"].get("title", e.get("title")),
            "html": sub["html"].removeprefix(prefix),
        }
        if sub.get("pdf"):
            view["pdf"] = sub["pdf"].removeprefix(prefix)
        views.append((view, sub))
    return views


def _render_site_pages(
    pub: Publication, entries: list[dict[str, Any]], out: Path, languages: list[str]
) -> list[str]:
    """One language's site-wide pages into ``out`` (the site's root, or ``<root>/<lang>/``)."""
    from . import feeds, search

    site = site_context(pub)
    L = site["L"]
    base = pub.config.base_url
    here = sub_site(pub)
    main = pub.config.main_language

    def links(page: str) -> dict[str, Any]:
        versions = {lang: (page if lang == main else f"{lang}/{page}") for lang in languages}
        return language_links(pub, here + page, versions)

    _keep_feed_html(pub, entries)
    write_file(out / "index.html", _home(pub, site, entries, links("index.html")))
    write_file(
        out / "publisher" / "index.html",
        _render(
            "publisher.html",
            site=site,
            L=L,
            root="../",
            page={
                "title": f"{L['about_publisher']} — {site['name']}",
                "description": pub.config.publisher.about or site["name"],
                "canonical": f"{base}publisher/",
                "og_type": "website",
                "image": None,
                "jsonld": {"@context": "https://schema.org", **_organisation(pub)},
                **links("publisher/index.html"),
            },
        ),
    )
    write_file(
        out / "search" / "index.html",
        _render(
            "search.html",
            site=site,
            L=L,
            root="../",
            csp=CSP_SEARCH,
            search_parts=" ".join(name for name, _ in search.search_parts(entries)),
            page={
                "title": f"{L['web_search']} — {site['name']}",
                "description": L["web_search_label"],
                "canonical": f"{base}search/",
                "og_type": "website",
                "image": None,
                "jsonld": {"@context": "https://schema.org", "@type": "SearchResultsPage"},
                **links("search/index.html"),
            },
        ),
    )
    write_file(out / "feed.xml", feeds.atom(pub, entries[:FEED_ISSUES]))
    write_file(out / "feed.json", feeds.json_feed(pub, entries[:FEED_ISSUES]))
    return search.build_pagefind_index(out, entries)


def _keep_feed_html(pub: Publication, entries: list[dict[str, Any]]) -> None:
    """The build state keeps the feeds' item HTML for the issues in the feeds only (it is
    most of the state's size). An issue that comes back into the feeds (a newer one was
    removed) has its HTML made again from its folder."""
    from ...content import load_issue

    for n, entry in enumerate(entries):
        items = entry["_web"]["items"]
        if n >= FEED_ISSUES:
            for item in items:
                item.pop("feed_html", None)
        elif any("feed_html" not in item for item in items):
            issue = load_issue(pub, entry["slug"], None if is_main(pub) else pub.config.language)
            web = _prepare(pub, issue, entry, _copy_images(issue, None))
            entry["_web"] = _site_record(web)


def _organisation(pub: Publication) -> dict[str, Any]:
    p = pub.config.publisher
    data: dict[str, Any] = {"@type": "Organization", "name": p.name or pub.config.name}
    if p.about:
        data["description"] = p.about
    if p.website:
        data["url"] = p.website
    if p.emails:
        data["email"] = p.emails[0]
    if p.address:
        data["address"] = {"@type": "PostalAddress", "streetAddress": ", ".join(p.address)}
    return data


def _home(
    pub: Publication, site: dict[str, Any], entries: list[dict[str, Any]], links: dict[str, Any]
) -> str:
    latest = entries[0] if entries else None
    volumes: dict[int, list[dict[str, Any]]] = {}
    for e in entries:
        volumes.setdefault(e["volume"], []).append(e)
    archive = [
        {
            "volume": v,
            "label": localize_digits(site["L"]["web_volume"].format(volume=v), site["lang"]),
            "issues": volumes[v],
        }
        for v in sorted(volumes, reverse=True)
    ]
    page = {
        "title": f"{site['name']}" + (f" — {site['tagline']}" if site["tagline"] else ""),
        "description": site["tagline"] or site["name"],
        "canonical": site["base_url"],
        "og_type": "website",
        "image": None,
        "jsonld": {"@context": "https://schema.org", **_periodical(pub)},
        **links,
    }
    return _render(
        "home.html",
        site=site,
        L=site["L"],
        root="",
        page=page,
        latest=latest,
        latest_date=date.fromisoformat(latest["date"]) if latest else None,
        pdf_text=pdf_text(latest, site["lang"]) if latest else "",
        lead_items=LEAD_ITEMS,
        archive=archive,
    )


ARABIC_SCRIPT = {"ar", "fa", "ur", "ps", "sd", "ckb"}
"""Languages written in the Arabic script: their editions get the Amiri web font."""


def _write_static(pub: Publication, out: Path) -> None:
    """The static files every language's pages share (``static/``), and Amiri (with its
    licence) when an edition is in an Arabic-script language."""
    static = resources.files(__package__).joinpath("static")
    for name in ("masthead.css", "search.js", "favicon.svg"):
        write_file(out / "static" / name, static.joinpath(name).read_bytes())
    if any(base_language(lang) in ARABIC_SCRIPT for lang in pub.config.edition_languages):
        import fontpkg_amiri

        fonts = out / "static" / "fonts"
        for source, name in (("files/Amiri-Regular.ttf", None), ("LICENSE", "Amiri-LICENSE.txt")):
            path = fontpkg_amiri.ROOT / source
            target = fonts / (name or path.name)
            if target.is_file() and target.stat().st_size == path.stat().st_size:
                continue  # the staged hard link of the same file
            write_file(target, path.read_bytes())
