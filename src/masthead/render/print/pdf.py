"""The print edition: an issue → JSON data → the Typst theme → a tagged PDF.

The theme (``theme/masthead.typ``, or the publication's own) receives one JSON document in
``sys.inputs.data``::

    {"publication": {"name", "tagline", "lang", "dir", "paper", "columns", "authors",
                     "publisher": {"name", "about", "address", "emails", "website"}},
     "issue": {"slug", "volume", "number", "title", "date_text", "year", "month", "day"},
     "labels": {…the catalogue of theme words…},
     "style": {"fonts", "size", "accent"},
     "items": [{"slug", "kind", "title", "authors", "source", "source_url", "published_text",
                "summary", "image": {"path", "alt", "caption"} | null, "to", "salutation",
                "signed", "letter_date", "body": [document tree]}]}

Image paths are absolute within the Typst root, which is the publication folder: the theme
can read nothing outside it. Only images of the item's own issue folder are given, and an SVG
only as its cleaned copy (it names no other file).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ...errors import RenderError
from ...i18n import catalogue, format_long_date, format_month_year
from ...model import Issue, Item, Publication
from ..svg import clean_svg, svg_refusal

PDF_STANDARDS = ("ua-1", "a-2b")
"""Standards the PDF is checked against: PDF/UA-1 (accessible) and PDF/A-2b (archival)."""

RTL_LANGUAGES = {"ar", "fa", "he", "ur", "ps", "sd", "ckb", "yi", "dv"}


@dataclass(frozen=True)
class PrintEdition:
    """A rendered print edition."""

    pdf: bytes
    pages: dict[str, tuple[int, int]]
    """Each item's first and last print page, as the contents box shows them."""
    page_count: int
    standards: tuple[str, ...]
    """The PDF standards Typst checked and accepted for this file."""
    warnings: list[str] = field(default_factory=list)


_fonts_lock = threading.Lock()


@cache
def shared_fonts() -> Any:
    """One font book for every compile (scanning fonts is the slow part of a cold start)."""
    import typst

    with _fonts_lock:
        return typst.Fonts(
            include_system_fonts=False, include_embedded_fonts=True, font_paths=font_dirs()
        )


def font_dirs() -> list[str]:
    """Fonts shipped as Python packages: Amiri (OFL) for Arabic-script languages."""
    import fontpkg_amiri

    return [str(fontpkg_amiri.ROOT / "files")]


FONTS = ["Libertinus Serif", "Amiri"]
"""Latin text in Libertinus Serif (embedded in Typst); Persian and Arabic fall back to Amiri."""


@cache
def builtin_theme() -> bytes:
    return resources.files(__package__).joinpath("theme/masthead.typ").read_bytes()


def theme_file(pub: Publication) -> Path:
    """The Typst theme to compile: the publication's own (``theme`` in masthead.toml) or the
    built-in one, copied into ``PUB/.masthead/`` because Typst compiles only files inside its
    root, and the root is the publication folder."""
    if pub.config.theme:
        path = (pub.root / pub.config.theme).resolve()
        if not path.is_relative_to(pub.root) or not path.is_file():
            raise RenderError(
                f"theme file {pub.config.theme!r} not found in the publication folder",
                path=pub.root / "masthead.toml",
                fix="put the .typ file inside the publication folder, or remove `theme`",
            )
        return path
    target = pub.state_dir / "theme" / "masthead.typ"
    source = builtin_theme()
    if not target.is_file() or target.read_bytes() != source:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Unique per thread too: the editor's print preview writes it from a thread of the
        # same process as a build's.
        tmp = target.with_name(f".masthead.typ.{os.getpid()}-{threading.get_ident()}")
        tmp.write_bytes(source)
        tmp.replace(target)
    return target


def _root_path(pub: Publication, path: Path) -> str:
    """A file's path as Typst sees it: absolute within the publication folder."""
    return "/" + path.resolve().relative_to(pub.root).as_posix()


def _image_path(pub: Publication, item: Item, src: str) -> str | None:
    """The Typst path of image ``src`` of ``item``, or None when it is not a file of the
    item's issue folder. An SVG is given as its cleaned copy (:func:`clean_svg`, in
    ``.masthead/print-images/``): Typst would otherwise load the files its ``<image>``
    elements name, from anywhere under its root."""
    folder = item.path.parent.resolve()
    path = (item.path.parent / src).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        return None
    if path.suffix.lower() != ".svg":
        return _root_path(pub, path)
    cleaned = clean_svg(path.read_bytes())
    if cleaned is None:
        return None  # shown as its alt text; see svg_warnings
    copy = pub.state_dir / "print-images" / f"{hashlib.sha256(cleaned).hexdigest()[:32]}.svg"
    if not copy.is_file():
        copy.parent.mkdir(parents=True, exist_ok=True)
        tmp = copy.with_name(f".{copy.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_bytes(cleaned)
        tmp.replace(copy)
    return _root_path(pub, copy)


def svg_warnings(issue: Issue) -> list[str]:
    """A warning for each SVG image of the issue that :func:`clean_svg` refuses: it is left
    out of the print and web editions alike (its alt text is shown)."""
    from ...content.markdown import walk_blocks

    warnings, seen = [], set()
    for item in issue.items:
        sources = [item.meta.image] if item.meta.image else []
        sources += [b["src"] for b in walk_blocks(item.body) if b["type"] == "image"]
        for src in sources:
            path = item.path.parent / src
            if not src.lower().endswith(".svg") or path in seen or not path.is_file():
                continue
            seen.add(path)
            reason = svg_refusal(path.read_bytes())
            if reason:
                warnings.append(
                    f"{item.path}: image {src!r} is left out of the print and web editions: "
                    f"{reason}"
                )
    return warnings


def _tree_with_paths(pub: Publication, item: Item, blocks: list[dict[str, Any]]) -> list[Any]:
    """The body tree, images given their Typst path (or none when not a local file)."""
    out = []
    for block in blocks:
        block = dict(block)
        if block["type"] == "image":
            block["path"] = _image_path(pub, item, block["src"])
        elif block["type"] == "quote":
            block["children"] = _tree_with_paths(pub, item, block["children"])
        elif block["type"] == "list":
            block["items"] = [_tree_with_paths(pub, item, i) for i in block["items"]]
        out.append(block)
    return out


def item_data(
    pub: Publication, issue: Issue, item: Item, lang: str, gregorian: bool = False
) -> dict[str, Any]:
    m = item.meta
    image = None
    image_path = _image_path(pub, item, m.image) if m.image else None
    if image_path is not None:
        image = {
            "path": image_path,
            "alt": m.image_alt or "",
            "caption": m.caption or "",
        }
    return {
        "slug": item.slug,
        "kind": m.kind.value,
        "title": m.title,
        "authors": m.authors,
        "source": m.source,
        "source_url": m.source_url,
        "published_text": (
            format_long_date(m.published, lang, gregorian=gregorian) if m.published else None
        ),
        "summary": m.summary,
        "image": image,
        "to": m.to,
        "salutation": m.salutation,
        "signed": m.signed,
        "letter_date": format_long_date(m.published or issue.date, lang, gregorian=gregorian),
        "body": _tree_with_paths(pub, item, item.body),
    }


def _is_rtl(lang: str) -> bool:
    return lang.split("-")[0].lower() in RTL_LANGUAGES


def issue_data(pub: Publication, issue: Issue) -> dict[str, Any]:
    """The JSON document the theme walks (see the module docstring)."""
    lang = issue.lang or pub.config.main_language
    c = pub.config.localized(lang)
    gregorian = c.gregorian_dates
    authors = sorted({a for item in issue.items for a in item.meta.authors})
    return {
        "publication": {
            "name": c.name,
            "tagline": c.tagline,
            "lang": lang.split("-")[0],
            "dir": "rtl" if _is_rtl(lang) else "ltr",
            "paper": c.paper,
            "columns": c.columns,
            "authors": [c.publisher.name or c.name, *authors],
            "publisher": c.publisher.model_dump(),
        },
        "issue": {
            "slug": issue.slug,
            "volume": issue.volume,
            "number": issue.number,
            "title": issue.title,
            "date_text": format_month_year(issue.date, lang, gregorian=gregorian),
            "year": issue.date.year,
            "month": issue.date.month,
            "day": issue.date.day,
        },
        "labels": catalogue(lang),
        # Amiri's letters are small beside Libertinus at the same size: a point more in RTL.
        "style": {"fonts": FONTS, "size": 11 if _is_rtl(lang) else 10, "accent": "#1d4e6b"},
        "items": [item_data(pub, issue, item, lang, gregorian) for item in issue.items],
    }


def issue_compiler(pub: Publication, issue: Issue) -> Any:
    """A Typst compiler for one issue: the theme, the issue as data, the shared fonts, the
    publication folder as the root (so nothing outside it can be read)."""
    import typst

    return typst.Compiler(
        str(theme_file(pub)),
        root=str(pub.root),
        font_paths=shared_fonts(),
        ignore_system_fonts=True,
        sys_inputs={"data": json.dumps(issue_data(pub, issue), ensure_ascii=False)},
    )


def read_page_map(compiler: Any) -> tuple[dict[str, tuple[int, int]], int]:
    """Each item's first and last page and the page count, as the laid-out document gives
    them (the theme's ``<page-map>``; the same numbers as the contents box)."""
    page_map = json.loads(compiler.query("<page-map>", field="value", one=True))
    pages = {slug: (int(s["first"]), int(s["last"])) for slug, s in page_map["items"].items()}
    return pages, int(page_map["page_count"])


def render_print_edition(
    pub: Publication, issue: Issue, *, standards: tuple[str, ...] = PDF_STANDARDS
) -> PrintEdition:
    """Typeset one issue. Tries the PDF standards first; if Typst refuses the document
    under them (e.g. an image PDF/A does not allow), renders without and says so."""
    import typst

    compiler = issue_compiler(pub, issue)
    warnings: list[str] = svg_warnings(issue)
    try:
        pdf = compiler.compile(format="pdf", pdf_standards=list(standards))
    except typst.TypstError as exc:
        if not standards:
            raise RenderError(f"Typst could not typeset issue {issue.slug}: {exc}") from None
        warnings.append(
            f"{issue.slug}: the PDF does not meet {', '.join(standards)} ({_first_line(exc)}); "
            "written without those checks"
        )
        standards = ()
        try:
            pdf = compiler.compile(format="pdf")
        except typst.TypstError as exc2:
            raise RenderError(f"Typst could not typeset issue {issue.slug}: {exc2}") from None
    pages, page_count = read_page_map(compiler)
    return PrintEdition(
        pdf=pdf, pages=pages, page_count=page_count, standards=tuple(standards), warnings=warnings
    )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
