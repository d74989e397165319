"""Feeds and the sitemap: Atom (RFC 4287), JSON Feed 1.1 and sitemap.xml.

One feed entry per issue (the newest :data:`~masthead.render.web.site.FEED_ISSUES`), its
items' HTML in the content, its PDF as an enclosure. The XML is built as a tree by
ElementTree, so every string is escaped by the serialiser; all URLs are absolute, made
from ``base_url``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree as ET

from ... import __version__
from ...model import Publication

ATOM = "http://www.w3.org/2005/Atom"
SITEMAP = "http://www.sitemaps.org/schemas/sitemap/0.9"
XHTML = "http://www.w3.org/1999/xhtml"


def _timestamp(day: str) -> str:
    """An issue date as an RFC 3339 timestamp (the issue appears at midnight UTC)."""
    return f"{day}T00:00:00Z"


def _issue_title(entry: dict[str, Any]) -> str:
    web = entry["_web"]
    title = web.get("label_date") or f"{web['label']}, {web['date_text']}"
    return f"{title}: {entry['title']}" if entry.get("title") else title


def _issue_html(pub: Publication, entry: dict[str, Any]) -> str:
    """The feed content of an issue: each item, then the PDF link."""
    from .site import pdf_text

    parts = [item["feed_html"] for item in entry["_web"]["items"]]
    if entry.get("pdf"):
        from markupsafe import Markup

        text = pdf_text(entry, pub.config.language)
        url = pub.config.base_url + quote(entry["pdf"])
        parts.append(str(Markup('<p><a href="%s">%s</a></p>') % (url, text)))
    return "\n".join(parts)


def _author(pub: Publication) -> str:
    return pub.config.publisher.name or pub.config.name


def atom(pub: Publication, entries: list[dict[str, Any]]) -> bytes:
    """The Atom feed (``feed.xml``)."""
    ET.register_namespace("", ATOM)
    base = pub.config.base_url

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    feed = ET.Element(
        f"{{{ATOM}}}feed", {"{http://www.w3.org/XML/1998/namespace}lang": pub.config.language}
    )
    sub(feed, "id", base)
    sub(feed, "title", pub.config.name)
    if pub.config.tagline:
        sub(feed, "subtitle", pub.config.tagline)
    sub(feed, "updated", _timestamp(entries[0]["date"]) if entries else "1970-01-01T00:00:00Z")
    sub(feed, "link", rel="self", type="application/atom+xml", href=f"{base}feed.xml")
    sub(feed, "link", rel="alternate", type="text/html", href=base)
    author = sub(feed, "author")
    sub(author, "name", _author(pub))
    if pub.config.publisher.website:
        sub(author, "uri", pub.config.publisher.website)
    sub(feed, "generator", "Masthead", version=__version__)
    for entry in entries:
        url = f"{base}{quote(entry['slug'])}/"
        e = sub(feed, "entry")
        sub(e, "id", url)
        sub(e, "title", _issue_title(entry))
        sub(e, "updated", _timestamp(entry["date"]))
        sub(e, "published", _timestamp(entry["date"]))
        sub(e, "link", rel="alternate", type="text/html", href=url)
        if entry.get("pdf"):
            sub(
                e,
                "link",
                rel="enclosure",
                type="application/pdf",
                length=str(int(entry.get("pdf_bytes", 0))),
                href=base + quote(entry["pdf"]),
            )
        summary = " · ".join(item["title"] for item in entry["_web"]["items"])
        sub(e, "summary", summary)
        sub(e, "content", _issue_html(pub, entry), type="html")
    ET.indent(feed)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True) + b"\n"


def json_feed(pub: Publication, entries: list[dict[str, Any]]) -> str:
    """The JSON Feed 1.1 (``feed.json``)."""
    base = pub.config.base_url
    feed: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": pub.config.name,
        "home_page_url": base,
        "feed_url": f"{base}feed.json",
        "language": pub.config.language,
        "authors": [{"name": _author(pub), **_url(pub.config.publisher.website)}],
        "items": [],
    }
    if pub.config.tagline:
        feed["description"] = pub.config.tagline
    for entry in entries:
        url = f"{base}{quote(entry['slug'])}/"
        item: dict[str, Any] = {
            "id": url,
            "url": url,
            "title": _issue_title(entry),
            "content_html": _issue_html(pub, entry),
            "summary": " · ".join(i["title"] for i in entry["_web"]["items"]),
            "date_published": _timestamp(entry["date"]),
        }
        if entry.get("pdf"):
            item["attachments"] = [
                {
                    "url": base + quote(entry["pdf"]),
                    "mime_type": "application/pdf",
                    "size_in_bytes": int(entry.get("pdf_bytes", 0)),
                    "title": _issue_title(entry),
                }
            ]
        feed["items"].append(item)
    return json.dumps(feed, ensure_ascii=False, indent=1) + "\n"


def _url(url: str | None) -> dict[str, str]:
    return {"url": url} if url else {}


def sitemap(
    pub: Publication,
    entries: list[dict[str, Any]],
    editions: dict[str, list[dict[str, Any]]] | None = None,
) -> bytes:
    """``sitemap.xml``: the home and publisher pages, every issue and every item, in every
    language. A page that exists in more than one language lists all its versions as
    ``xhtml:link rel="alternate" hreflang`` (Google's way for multilingual sitemaps).

    ``editions`` maps each other language to its sub-site's entries (see
    :func:`masthead.render.web.site.render_web_site`)."""
    ET.register_namespace("", SITEMAP)
    ET.register_namespace("xhtml", XHTML)
    base = pub.config.base_url
    main = pub.config.main_language
    editions = editions or {}
    urlset = ET.Element(f"{{{SITEMAP}}}urlset")

    groups: list[tuple[dict[str, str], str | None]] = []

    def add(versions: dict[str, str], lastmod: str | None = None) -> None:
        groups.append((versions, lastmod))

    def everywhere(path: str, langs: list[str]) -> dict[str, str]:
        return {lang: base + ("" if lang == main else f"{lang}/") + path for lang in langs}

    languages = [main, *(lang for lang, views in editions.items() if views)]
    add(everywhere("", languages), entries[0]["date"] if entries else None)
    add(everywhere("publisher/", languages))
    translated = {
        lang: {v["slug"]: {i["slug"] for i in v["_web"]["items"]} for v in views}
        for lang, views in editions.items()
    }
    for entry in entries:
        issue = quote(entry["slug"]) + "/"
        langs = [main, *(lang for lang, t in translated.items() if entry["slug"] in t)]
        add(everywhere(issue, langs), entry["date"])
        for item in entry["_web"]["items"]:
            item_langs = [
                lang
                for lang in langs
                if lang == main or item["slug"] in translated[lang][entry["slug"]]
            ]
            add(everywhere(f"{issue}{quote(item['slug'])}/", item_langs), entry["date"])
    for lang in languages:  # the main language's pages first, then each other language's
        for versions, lastmod in groups:
            if lang not in versions:
                continue
            url = ET.SubElement(urlset, f"{{{SITEMAP}}}url")
            ET.SubElement(url, f"{{{SITEMAP}}}loc").text = versions[lang]
            if lastmod:
                ET.SubElement(url, f"{{{SITEMAP}}}lastmod").text = lastmod
            if len(versions) > 1:
                for other, href in versions.items():
                    attrs = {"rel": "alternate", "hreflang": other, "href": href}
                    ET.SubElement(url, f"{{{XHTML}}}link", attrs)
    return ET.tostring(urlset, encoding="utf-8", xml_declaration=True) + b"\n"
