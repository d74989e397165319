"""``masthead clip``: bring another outlet's article into an issue, with its attribution.

The stages, each a plain function:

1. :func:`read_page` — fetch the address (safely, :mod:`.fetch`) or read a saved file;
   :func:`decode_html` finds the real character set of pages that state a wrong one;
2. :func:`extract_article` — the main text (trafilatura) and the metadata: title,
   authors, outlet, date, canonical address, language, lead image and its alt text;
3. :func:`~.html_markdown.html_to_markdown` — sanitise the text and write it as Markdown
   (an excerpt keeps the first N words, to a sentence's end);
4. :func:`clip` — write ``issues/<issue>/<slug>.md`` with its front matter, download the
   lead image beside it, and report what was found and what the editor must still add.

Nothing is guessed: an author, a date or an address the page does not give is left out
and reported, never made up.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import yaml

from ..errors import ClipError, ContentError, FetchError, IssueNotFound
from ..model import Publication
from .fetch import MAX_BYTES, TIMEOUT, fetch
from .front_matter import parse_front_matter
from .html_markdown import count_words, html_to_markdown, text_pieces
from .loader import (
    FRONT_MATTER,
    item_files,
    load_issue_config,
    load_publication,
    read_text,
)

KINDS = ("reprint", "excerpt")
EXCERPT_WORDS = 150
IMAGE_MAX_BYTES = 5 * 1024 * 1024
MIN_WORDS = 60
"""A main text shorter than this (in words) is probably a miss: the fallback is tried."""

_HTML_TYPES = {"text/html", "application/xhtml+xml", "text/plain", "application/xml", "text/xml"}
_IMAGE_TYPES = [  # (magic bytes, suffix); SVG is left out on purpose: it can carry scripts
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF87a", ".gif"),
    (b"GIF89a", ".gif"),
]


@dataclass
class Page:
    """A page to clip: its text and the address it came from (None for a file without one)."""

    html: str
    url: str | None
    origin: str
    """What the editor gave: the address or the file path."""


@dataclass
class Article:
    """What was extracted from a page. ``None`` / empty means the page does not say."""

    title: str | None
    authors: list[str]
    site_name: str | None
    published: date | None
    canonical_url: str | None
    language: str | None
    image_url: str | None
    image_alt: str | None
    description: str | None
    body_html: str
    """The main text as HTML, *unsanitised* (it is sanitised on conversion)."""


@dataclass
class ClipReport:
    """What :func:`clip` wrote, found, could not find, and warns about."""

    path: Path
    issue: str
    found: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    words: int = 0


# ----------------------------------------------------------------------------------------
# 1. Reading the page


def read_page(
    source: str,
    *,
    allow_private: bool = False,
    timeout: float = TIMEOUT,
    max_bytes: int = MAX_BYTES,
) -> Page:
    """Fetch ``source`` if it is an address, else read it as a saved HTML file."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", source) or source.lower().startswith(
        ("javascript:", "data:", "file:")
    ):
        result = fetch(source, allow_private=allow_private, timeout=timeout, max_bytes=max_bytes)
        if result.content_type not in _HTML_TYPES:
            raise ClipError(
                f"{result.url} is {result.content_type}, not a web page",
                fix="clip the address of the article's page",
            )
        return Page(decode_html(result.body, result.charset), result.url, source)
    path = Path(source)
    if not path.is_file():
        raise ClipError(
            f"no such file: {source}",
            fix="give a saved .html file, or a web address starting with https://",
        )
    if path.stat().st_size > max_bytes:
        raise ClipError(f"{source} is larger than {max_bytes // 1024 // 1024} MB", path=path)
    return Page(decode_html(path.read_bytes()), None, source)


_BOMS = [
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def decode_html(data: bytes, declared: str | None = None) -> str:
    """The page's text. Pages often state the wrong character set, so: a byte-order mark
    wins; bytes that are valid UTF-8 are UTF-8 (text in another encoding almost never is);
    else the declared charset (HTTP header, then ``<meta>``), read as browsers read it
    (ISO-8859-1 means windows-1252); else charset-normalizer's guess (windows-1252 when
    it reads the bytes as cleanly as any other)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    meta = _META_CHARSET.search(data[:8192])
    for name in (declared, meta.group(1).decode("ascii") if meta else None):
        encoding = _browser_encoding(name)
        if encoding and encoding != "utf-8":
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                continue
    from charset_normalizer import from_bytes

    results = from_bytes(data)
    matches = list(results)
    if not matches:
        return data.decode("cp1252", "replace")
    # Western pages are by far the most common liars, and windows-1252 is what a browser
    # falls back to: prefer it when it reads the bytes as cleanly as the best guess.
    cleanest = min(m.chaos for m in matches)
    western = [m for m in matches if m.encoding == "cp1252" and m.chaos <= cleanest + 0.01]
    return str(western[0] if western else results.best())


def _browser_encoding(name: str | None) -> str | None:
    if not name:
        return None
    try:
        encoding = codecs.lookup(name.strip()).name
    except LookupError:
        return None
    # The WHATWG Encoding standard: these labels all mean windows-1252.
    return "cp1252" if encoding in ("latin-1", "iso8859-1", "ascii") else encoding


# ----------------------------------------------------------------------------------------
# 2. Extraction


def extract_article(html: str, url: str | None = None) -> Article:
    """The article's main text and metadata, as far as the page gives them."""
    import lxml.html
    import trafilatura

    html = _strip_xml_declaration(html)
    tree = lxml.html.document_fromstring(html) if html.strip() else None
    if tree is None:
        raise ClipError("the page is empty")
    meta = trafilatura.extract_metadata(
        html,
        default_url=url,
        extensive=False,  # no guessing a date from "© 2019" or a stray number
        date_config={"original_date": True, "extensive_search": False},
    )
    base = url
    canonical = _absolute(meta.url, url) if meta.url else None
    if canonical:
        base = canonical
    image_url = _absolute(meta.image, base) if meta.image else None
    return Article(
        title=_clean(meta.title),
        authors=_authors(meta.author),
        site_name=_clean(meta.sitename),
        published=_date(meta.date),
        canonical_url=canonical or (url if url and _is_http(url) else None),
        language=_language(tree),
        image_url=image_url,
        image_alt=_image_alt(tree, image_url, base) if image_url else None,
        description=_clean(meta.description),
        body_html=extract_body(html, url),
    )


def extract_body(html: str, url: str | None = None) -> str:
    """The main text as HTML: trafilatura's, keeping headings, lists, quotes, code, tables,
    links and emphasis; when it finds too little (under :data:`MIN_WORDS`), the longer of
    its recall-tuned run and its baseline (which reads e.g. a page's JSON-LD
    ``articleBody``). Short reader calls-to-action (newsletter, app, disclosure) are
    dropped."""
    import lxml.html
    import trafilatura

    options: dict[str, Any] = {
        "url": url,
        "output_format": "html",
        "include_links": True,
        "include_tables": True,
        "include_comments": False,
        "include_images": False,
    }
    body = trafilatura.extract(html, include_formatting=False, **options) or ""
    if _words(body) < MIN_WORDS:
        recall = trafilatura.extract(html, favor_recall=True, **options) or ""
        element = trafilatura.baseline(html)[0]
        baseline = lxml.html.tostring(element, encoding=str) if element is not None else ""
        body = max((body, recall, baseline), key=_words)
    else:
        formatted = trafilatura.extract(html, include_formatting=True, **options) or ""
        body = restore_emphasis(body, formatted)
    return drop_calls_to_action(body)


def restore_emphasis(plain: str, formatted: str) -> str:
    """``formatted`` (trafilatura's output with bold/italic) with the spaces it loses put
    back, when it holds the same text as ``plain``; else ``plain``.

    trafilatura's formatted output drops the space before an ``<i>`` or ``<b>``
    ("entitled<i>Beautiful Code</i>"), which would join words. Both runs hold the same
    characters, so wherever ``plain`` has white space between two characters and
    ``formatted`` has none at a tag boundary, a space goes back in."""
    import lxml.html

    if not plain.strip() or not formatted.strip():
        return plain
    plain_root = lxml.html.fragment_fromstring(plain, create_parent="div")
    root = lxml.html.fragment_fromstring(formatted, create_parent="div")
    plain_text = plain_root.text_content()
    if "".join(plain_text.split()) != "".join(root.text_content().split()):
        return plain
    gaps: set[int] = set()  # counts of non-space characters before which plain has a space
    seen, after_space = 0, False
    for char in plain_text:
        if char.isspace():
            after_space = True
            continue
        if after_space:
            gaps.add(seen)
        seen, after_space = seen + 1, False
    seen, last = 0, " "
    for node, attr in list(text_pieces(root)):
        text = getattr(node, attr) or ""
        if not text or not isinstance(node.tag, str):
            continue
        if seen in gaps and not last.isspace() and not text[0].isspace():
            text = " " + text
            setattr(node, attr, text)
        seen += len("".join(text.split()))
        last = text[-1]
    return lxml.html.tostring(root, encoding=str)


_CALL_TO_ACTION = re.compile(
    r"""\bsign(ing)?[ -]up\b.{0,40}\b(newsletter|here|now|today)\b
      | \bsubscribe\ to\ (our|the)\b.{0,30}\b(newsletter|channel|podcast)
      | \bdownload\ (the|our)\b.{0,40}\bapps?\b
      | \bsubmit\ your\ letter\b
      | \badvertiser\ disclosure\b
      | \bwe\ may\ (receive|earn)\ (compensation|a\ commission)\b
      | \bfollow\ us\ on\b""",
    re.I | re.X,
)


def drop_calls_to_action(html: str, *, max_words: int = 50) -> str:
    """Remove short paragraphs that ask the reader to sign up, subscribe, download an app or
    read a disclosure: the outlet's furniture, not the article."""
    import lxml.html

    if not html.strip():
        return html
    root = lxml.html.fragment_fromstring(html, create_parent="div")
    for block in list(root.iter("p", "li")):
        text = block.text_content()
        if count_words(text) <= max_words and _CALL_TO_ACTION.search(text):
            block.drop_tree()
    return lxml.html.tostring(root, encoding=str)


def _words(html: str) -> int:
    return count_words(re.sub(r"<[^>]+>", " ", html))


def _strip_xml_declaration(html: str) -> str:
    # lxml refuses a str that starts with an encoding declaration (<?xml … encoding=…?>)
    return re.sub(r"^\s*<\?xml[^>]*\?>", "", html, count=1)


def _clean(value: str | None) -> str | None:
    if not value:
        return None
    value = " ".join(value.split())
    return value or None


def _authors(value: str | None) -> list[str]:
    names: list[str] = []
    for part in re.split(r"\s*;\s*", value or ""):
        name = re.sub(r"^(by|von|par|por)\s+", "", " ".join(part.split()), flags=re.I)
        if name and name not in names:
            names.append(name)
    return names


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None


def _is_http(url: str) -> bool:
    return bool(re.match(r"^https?://[^\s/$.?#][^\s]*$", url, re.I))


def _absolute(url: str, base: str | None) -> str | None:
    url = url.strip()
    if base:
        url = urljoin(base, url)
    return url if _is_http(url) else None


def _language(tree: Any) -> str | None:
    lang = tree.get("lang") or tree.get("{http://www.w3.org/XML/1998/namespace}lang")
    if not lang:
        found = tree.xpath("//meta[@property='og:locale']/@content")
        lang = found[0].replace("_", "-") if found else None
    return lang.strip() or None if lang else None


def _image_alt(tree: Any, image_url: str, base: str | None) -> str | None:
    for key in ("og:image:alt", "twitter:image:alt"):
        found = tree.xpath(f"//meta[@property='{key}' or @name='{key}']/@content")
        if found and found[0].strip():
            return _clean(found[0])
    for img in tree.iter("img"):
        src = img.get("src")
        if src and _absolute(src, base) == image_url and (img.get("alt") or "").strip():
            return _clean(img.get("alt"))
    return None


# ----------------------------------------------------------------------------------------
# 3 and 4. The item


def newest_issue(pub: Publication) -> str:
    """The slug of the issue with the highest (volume, number)."""
    if not pub.issue_slugs:
        raise IssueNotFound(
            f"no issues yet in {pub.issues_dir}",
            fix="start one with `masthead new-issue`",
        )
    return max(
        pub.issue_slugs,
        key=lambda s: (lambda c: (c.volume, c.number))(load_issue_config(pub, s)),
    )


def slugify(title: str, *, limit: int = 60) -> str:
    """A file name from a title: ASCII letters, digits and hyphens, cut at a word."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", text.lower())
    slug = ""
    for word in words:
        if len(slug) + len(word) + 1 > limit and slug:
            break
        slug = f"{slug}-{word}" if slug else word
    return slug[:limit] or "clipping"


def unique_path(folder: Path, slug: str) -> Path:
    taken = {p.stem for p in folder.iterdir()}
    candidate, n = slug, 2
    while candidate in taken:
        candidate, n = f"{slug}-{n}", n + 1
    return folder / f"{candidate}.md"


def clip(
    source: str,
    root: Path | str = ".",
    *,
    issue: str | None = None,
    kind: str = "reprint",
    words: int = EXCERPT_WORDS,
    allow_private: bool = False,
    images: bool = True,
    timeout: float = TIMEOUT,
    lang: str | None = None,
    translation_of: str | None = None,
) -> ClipReport:
    """Clip ``source`` (an address or a saved .html file) into an issue of the publication
    at ``root`` (the newest unless ``issue`` is given) as a ``kind`` item.

    With ``lang`` (another language of the publication) the clipping is that language's
    version of an item: ``<translation_of>.<lang>.md`` (or a slug from its title)."""
    if kind not in KINDS:
        raise ClipError(f"unknown kind {kind!r}", fix="use --kind reprint or --kind excerpt")
    if words < 1:
        raise ClipError("--words must be 1 or more")
    pub = load_publication(root)
    main_language = pub.config.main_language
    if lang == main_language:
        lang = None
    if lang is not None and lang not in pub.config.edition_languages:
        raise ClipError(
            f"this publication has no {lang!r} edition",
            path=pub.root / "masthead.toml",
            fix=f'add it to `languages`, e.g. languages = ["{main_language}", "{lang}"]',
        )
    slug = issue or newest_issue(pub)
    load_issue_config(pub, slug)  # raises IssueNotFound with the list of issues
    folder = pub.issues_dir / slug

    page = read_page(source, allow_private=allow_private, timeout=timeout)
    article = extract_article(page.html, page.url)
    body = html_to_markdown(
        article.body_html,
        base_url=article.canonical_url or page.url,
        max_words=words if kind == "excerpt" else None,
    )
    if not body.strip():
        raise ClipError(
            f"found no article text in {source}",
            fix="the page may need JavaScript or a login: save it from your browser once it "
            "shows the article, and clip the saved file",
        )
    title = article.title or _first_heading(body)
    stem = translation_of or slugify(title or article.site_name or "clipping")
    if lang is None:
        path = unique_path(folder, stem)
    else:
        path = folder / f"{stem}.{lang}.md"
        if path.exists():
            raise ClipError(
                f"{path.name} exists already in {folder.name}/",
                fix="remove it first, or clip as the translation of another item "
                "(--translation-of SLUG)",
            )
    body = _drop_title_heading(body, title)
    report = ClipReport(path=path, issue=slug, words=count_words(body))
    shown = path.relative_to(pub.root).as_posix()

    meta: dict[str, Any] = {"title": title or "Untitled clipping", "kind": kind}
    if article.authors:
        meta["authors"] = article.authors
    source_name = article.site_name or _host(article.canonical_url or page.url)
    if source_name:
        meta["source"] = source_name
    if article.canonical_url:
        meta["source_url"] = article.canonical_url
    if article.published:
        meta["published"] = article.published
    if article.description:
        meta["summary"] = article.description

    _note(report, "title", title, f"no title found: replace the title in {shown}")
    _note(
        report, "authors", ", ".join(article.authors), f"no author found: add `authors:` to {shown}"
    )
    _note(
        report,
        "outlet",
        article.site_name,
        f"no outlet name found: check `source:` in {shown}"
        if source_name
        else f"no outlet name found: add `source:` to {shown}",
    )
    _note(
        report,
        "published",
        article.published.isoformat() if article.published else None,
        f"no publication date found: add `published: YYYY-MM-DD` to {shown}",
    )
    _note(
        report,
        "address",
        article.canonical_url,
        f"no address of the original found: add `source_url:` to {shown}",
    )
    _language_note(report, article.language, lang or main_language)
    if article.image_url and images:
        _lead_image(report, article, path, meta, allow_private, timeout, shown)
    elif article.image_url:
        report.found.append(("lead image", f"{article.image_url} (not downloaded)"))
    else:
        report.missing.append("no lead image found")

    if article.canonical_url:
        for other in find_clipped(pub, article.canonical_url):
            report.warnings.append(
                f"{article.canonical_url} is already in {other.relative_to(pub.root).as_posix()}"
            )
    write_item(path, meta, body)
    if lang is None:
        _add_to_print_order(report, folder / "issue.toml", path.name, shown)
    elif not (folder / f"{stem}.md").is_file():
        report.missing.append(
            f"no {stem}.md beside it: the {lang} edition prints the {lang} versions of the "
            f"issue's items, so add {stem}.md in {main_language} (or clip with "
            "--translation-of SLUG of an existing item)"
        )
    return report


def _add_to_print_order(report: ClipReport, issue_toml: Path, name: str, shown: str) -> None:
    """An issue that lists its ``items`` prints only those: add the new one at the end."""
    import tomllib

    text = issue_toml.read_text("utf-8")
    if tomllib.loads(text).get("items") is None:
        return
    edited = add_to_items(text, name)
    if edited is not None:
        issue_toml.write_text(edited, "utf-8")
        report.found.append(("print order", f"added last to `items` in {issue_toml.name}"))
    else:
        report.missing.append(
            f"add {name!r} to `items` in {issue_toml.parent.name}/issue.toml to print {shown}"
        )


def add_to_items(toml_text: str, name: str) -> str | None:
    """``toml_text`` with ``name`` appended to its top-level ``items`` array (comments and
    layout kept), or None when the array cannot be edited safely."""
    import tomllib

    match = re.search(r"^items\s*=\s*\[", toml_text, re.M)
    close = toml_text.find("]", match.end()) if match else -1
    if close < 0:
        return None
    inside = toml_text[match.end() : close].rstrip()
    separator = "" if not inside.strip() or inside.endswith(",") else ","
    if "\n" in inside:
        indent = re.search(r"\n([ \t]*)\S", inside)
        addition = f"{separator}\n{indent.group(1) if indent else '  '}{_toml_string(name)},\n"
    else:
        addition = f"{separator} {_toml_string(name)}" if inside.strip() else _toml_string(name)
    edited = toml_text[: match.end()] + inside + addition + toml_text[close:]
    try:
        items = tomllib.loads(edited).get("items")
    except tomllib.TOMLDecodeError:
        return None
    return edited if isinstance(items, list) and items and items[-1] == name else None


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _note(report: ClipReport, label: str, value: str | None, missing: str) -> None:
    if value:
        report.found.append((label, value))
    else:
        report.missing.append(missing)


def _language_note(report: ClipReport, language: str | None, publication: str) -> None:
    if not language:
        return
    report.found.append(("language", language))
    if language.split("-")[0].lower() != publication.split("-")[0].lower():
        report.warnings.append(
            f"the article is in {language!r}, the publication in {publication!r}"
        )


def _host(url: str | None) -> str | None:
    if not url:
        return None
    host = urlsplit(url).hostname or ""
    return host.removeprefix("www.") or None


def _first_heading(body: str) -> str | None:
    match = re.search(r"^#+ (.+)$", body, re.M)
    return re.sub(r"\\(.)", r"\1", match.group(1)) if match else None


def _drop_title_heading(body: str, title: str | None) -> str:
    """Extractors often keep the headline as the first heading: the item's title says it."""
    match = re.match(r"#+ (.+)\n\n?", body)
    if match and title and _same_text(re.sub(r"\\(.)", r"\1", match.group(1)), title):
        return body[match.end() :]
    return body


def _same_text(heading: str, title: str) -> bool:
    """Whether a heading is the headline again: the same words, give or take a few (the
    page's headline and its ``og:title`` often differ by a kicker such as "Coronavirus:")."""
    a = set(re.findall(r"\w+", heading.lower()))
    b = set(re.findall(r"\w+", title.lower()))
    if not a or not b:
        return False
    return len(a & b) / min(len(a), len(b)) >= 0.8 and len(a & b) / max(len(a), len(b)) >= 0.6


def _lead_image(
    report: ClipReport,
    article: Article,
    item_path: Path,
    meta: dict[str, Any],
    allow_private: bool,
    timeout: float,
    shown: str,
) -> None:
    url = article.image_url or ""
    try:
        result = fetch(
            url,
            allow_private=allow_private,
            max_bytes=IMAGE_MAX_BYTES,
            timeout=timeout,
            accept="image/png,image/jpeg,image/gif;q=0.9,*/*;q=0.1",
        )
    except FetchError as exc:
        report.missing.append(f"lead image not downloaded: {exc.message}")
        return
    suffix = next((s for magic, s in _IMAGE_TYPES if result.body.startswith(magic)), None)
    if suffix is None:
        report.missing.append(
            f"lead image skipped: {url} is not a PNG, JPEG or GIF image "
            f"(the server says {result.content_type})"
        )
        return
    image_path = item_path.with_suffix(suffix)
    image_path.write_bytes(result.body)
    meta["image"] = image_path.name
    report.found.append(("lead image", image_path.name))
    if article.image_alt:
        meta["image_alt"] = article.image_alt
        report.found.append(("image alt text", article.image_alt))
    else:
        report.missing.append(
            f"the lead image has no alt text: add `image_alt:` (what it shows) to {shown}"
        )


def write_item(path: Path, meta: dict[str, Any], body: str) -> None:
    """Write front matter (``yaml.safe_dump``) and body; never overwrite an existing file."""
    front = yaml.safe_dump(
        meta, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000
    )
    with path.open("x", encoding="utf-8") as out:
        out.write(f"---\n{front}---\n\n{body}")


def normalise_url(url: str) -> str:
    """For comparing addresses: no fragment, lower-case scheme and host, no trailing slash."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    host = (parts.hostname or "").removeprefix("www.")
    return f"{parts.scheme.lower()}://{host}{path}{query}"


def find_clipped(pub: Publication, url: str) -> list[Path]:
    """Item files in any issue whose ``source_url`` is ``url`` (as normalised)."""
    target = normalise_url(url)
    found = []
    for folder in sorted(pub.issues_dir.iterdir()) if pub.issues_dir.is_dir() else []:
        if not folder.is_dir():
            continue
        for path in item_files(folder):
            try:
                match = FRONT_MATTER.match(read_text(path))
                data = parse_front_matter(match.group(1), path=path) if match else None
            except ContentError:  # not ours to judge here: the build names what is wrong
                continue
            other = data.get("source_url") if isinstance(data, dict) else None
            if isinstance(other, str) and normalise_url(other) == target:
                found.append(path)
    return found
