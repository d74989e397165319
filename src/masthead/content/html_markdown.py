"""Extracted article HTML → sanitised → clean Markdown an editor can read and edit.

The HTML comes from a page Masthead does not control, so it is first cut down by ``nh3``
to an allow-list of structural tags (paragraphs, headings, lists, quotes, code, tables,
links, emphasis) with ``href`` as the only attribute, and only http/https/mailto links.
Then every piece of text is *escaped* as it becomes Markdown, so nothing on the page can
make Markdown structure of its own (a heading, a link, an image, raw HTML, an autolink):
``[x](javascript:…)`` or ``<script>`` in the page's text comes out as those characters.
Typst and HTML escaping of the text is the renderers' job; this module only guarantees
that the Markdown says what the page said, as text.

:func:`html_to_markdown` can also keep just the first N words, ending at a sentence
boundary (for excerpts).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin

import lxml.html
import nh3
from lxml.etree import _Element

ALLOWED_TAGS = {
    "p", "div", "section", "article", "h1", "h2", "h3", "h4", "h5", "h6",
    "ul", "ol", "li", "dl", "dt", "dd", "blockquote", "pre", "code", "hr", "br",
    "a", "b", "strong", "i", "em", "s", "del", "strike", "u", "sub", "sup", "span",
    "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "figure", "figcaption",
}  # fmt: skip
LINK_SCHEMES = {"http", "https", "mailto"}
_DROPPED_WITH_CONTENT = {"script", "style", "template", "noscript", "iframe", "object", "svg"}

_BLOCK_TAGS = {
    "p", "div", "section", "article", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol",
    "li", "dl", "dt", "dd", "blockquote", "pre", "hr", "table", "thead", "tbody", "tfoot",
    "tr", "th", "td", "caption", "figure", "figcaption",
}  # fmt: skip
_HEADINGS = {"h1": 2, "h2": 2, "h3": 3, "h4": 4, "h5": 4, "h6": 4}
_EMPHASIS = {"b": "**", "strong": "**", "i": "*", "em": "*", "s": "~~", "del": "~~"}
_EMPHASIS["strike"] = "~~"


def sanitise(html: str) -> str:
    """``html`` reduced to :data:`ALLOWED_TAGS`, ``href`` only, safe link schemes only."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        clean_content_tags=_DROPPED_WITH_CONTENT,
        attributes={"a": {"href"}, "ol": {"start"}},
        url_schemes=LINK_SCHEMES,
        link_rel=None,
        strip_comments=True,
    )


def html_to_markdown(
    html: str, *, base_url: str | None = None, max_words: int | None = None
) -> str:
    """Sanitise ``html`` and convert it to Markdown; relative links are resolved against
    ``base_url`` (and dropped without one). With ``max_words``, keep only the first words
    up to a sentence boundary."""
    clean = sanitise(html)
    if not clean.strip():
        return ""
    root = lxml.html.fragment_fromstring(clean, create_parent="div")
    if max_words is not None:
        truncate(root, max_words)
    blocks = _Converter(base_url).blocks(root)
    text = "\n\n".join(b for b in blocks if b.strip())
    return text + "\n" if text else ""


# ----------------------------------------------------------------------------------------
# Escaping


_ALWAYS = re.compile(r"([\\`*\[\]<|~#])")
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
_LINE_START = re.compile(r"^([-+=>])|^(\d{1,9})([.)])")


def escape_text(text: str) -> str:
    """Backslash-escape what Markdown would read as structure inside a line of text."""
    text = _ALWAYS.sub(r"\\\1", text)
    text = _UNDERSCORE.sub(r"\\_", text)
    return _ENTITY.sub(r"\\&", text)


def _protect_line_starts(text: str) -> str:
    """Escape a list marker, quote, setext underline or ordered-list number that text
    placed at the start of a line."""
    lines = []
    for line in text.split("\n"):
        line = line.lstrip(" ")
        lines.append(_LINE_START.sub(lambda m: "\\" + m.group(1) if m.group(1) else
                                     m.group(2) + "\\" + m.group(3), line, count=1))  # fmt: skip
    return "\n".join(lines)


def _link_target(url: str) -> str:
    """A link destination in ``<…>`` form: spaces, brackets and stray ``%`` percent-encoded."""
    url = re.sub(r"%(?![0-9A-Fa-f]{2})", "%25", url)
    for char, code in ((" ", "%20"), ("<", "%3C"), (">", "%3E"), ("\\", "%5C")):
        url = url.replace(char, code)
    return "<" + re.sub(r"[\x00-\x20]", "", url) + ">"


# ----------------------------------------------------------------------------------------
# Conversion


@dataclass
class _Emph:
    marker: str
    inner: str


_Piece = str | _Emph


class _Converter:
    def __init__(self, base_url: str | None) -> None:
        self.base_url = base_url

    # blocks -----------------------------------------------------------------------------

    def blocks(self, el: _Element) -> list[str]:
        """The Markdown blocks of an element's content (its text, children and their tails)."""
        out: list[str] = []
        run: list[_Piece] = []

        def flush() -> None:
            text = self._join(run).strip()
            run.clear()
            if text:
                out.append(_protect_line_starts(text))

        if el.text:
            run.append(self._text(el.text))
        for child in el:
            if not isinstance(child.tag, str):
                pass
            elif child.tag in _BLOCK_TAGS:
                flush()
                out.extend(self.block(child))
            else:
                run.extend(self.inline(child))
            if child.tail:
                run.append(self._text(child.tail))
        flush()
        return out

    def block(self, el: _Element) -> list[str]:
        tag = el.tag
        if tag in _HEADINGS:
            text = self.inline_text(el)
            return [f"{'#' * _HEADINGS[tag]} {text}"] if text else []
        if tag in ("ul", "ol"):
            return self.list_block(el)
        if tag == "blockquote":
            inner = "\n\n".join(self.blocks(el))
            if not inner:
                return []
            return ["\n".join(("> " + line).rstrip() for line in inner.split("\n"))]
        if tag == "pre":
            return self.code_block(el)
        if tag == "hr":
            return ["* * *"]
        if tag == "table":
            return self.table(el)
        return self.blocks(el)

    def list_block(self, el: _Element) -> list[str]:
        ordered = el.tag == "ol"
        start = el.get("start", "1")
        number = int(start) if start.isdigit() else 1
        items: list[str] = []
        for li in el:
            if not isinstance(li.tag, str):
                continue
            content = _join_item(self.blocks(li)) if li.tag == "li" else self.inline_text(li)
            if not content.strip():
                continue
            marker = f"{number}. " if ordered else "- "
            number += 1
            pad = " " * len(marker)
            lines = content.split("\n")
            items.append("\n".join([marker + lines[0]] + [pad + x if x else x for x in lines[1:]]))
        loose = any("\n\n" in item for item in items)
        return ["\n\n".join(items) if loose else "\n".join(items)] if items else []

    def code_block(self, el: _Element) -> list[str]:
        code = el.text_content().strip("\n")
        if not code.strip():
            return []
        longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
        fence = "`" * max(3, longest + 1)
        return [f"{fence}\n{code}\n{fence}"]

    def table(self, el: _Element) -> list[str]:
        rows: list[list[str]] = []
        for tr in el.iter("tr"):
            cells = [
                self.inline_text(cell).replace("\\\n", " ")
                for cell in tr
                if isinstance(cell.tag, str) and cell.tag in ("td", "th")
            ]
            if any(c.strip() for c in cells):
                rows.append(cells)
        if not rows:
            return []
        width = max(len(r) for r in rows)
        rows = [r + [""] * (width - len(r)) for r in rows]
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * width]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return ["\n".join(lines)]

    # inlines ----------------------------------------------------------------------------

    def inline_text(self, el: _Element) -> str:
        """An element's content flattened to one run of inline Markdown."""
        pieces: list[_Piece] = [self._text(el.text)] if el.text else []
        for child in el:
            if isinstance(child.tag, str):
                pieces.extend(self.inline(child))
                if child.tag in _BLOCK_TAGS:
                    pieces.append(" ")
            if child.tail:
                pieces.append(self._text(child.tail))
        return _protect_line_starts(self._join(pieces).strip())

    def inline(self, el: _Element) -> list[_Piece]:
        tag = el.tag
        if tag == "br":
            return ["\\\n"]
        if tag == "code":
            return [_code_span(el.text_content())]
        inner = self._join(self._children(el))
        if tag in _EMPHASIS:
            return [_Emph(_EMPHASIS[tag], inner)] if inner.strip() else [inner]
        if tag == "a":
            url = self._url(el.get("href", ""))
            label = inner.strip()
            if url is None or not label:
                return [inner]
            return [f"[{label}]({_link_target(url)})"]
        return [inner]

    def _children(self, el: _Element) -> list[_Piece]:
        pieces: list[_Piece] = [self._text(el.text)] if el.text else []
        for child in el:
            if isinstance(child.tag, str):
                if child.tag == "a":  # no links inside links: keep the inner text
                    pieces.append(self._join(self._children(child)))
                else:
                    pieces.extend(self.inline(child))
            if child.tail:
                pieces.append(self._text(child.tail))
        return pieces

    def _url(self, href: str) -> str | None:
        href = href.strip()
        if not href or href.startswith("#"):
            return None
        if self.base_url:
            href = urljoin(self.base_url, href)
        scheme = href.split(":", 1)[0].lower() if ":" in href else ""
        return href if scheme in LINK_SCHEMES else None

    @staticmethod
    def _text(text: str) -> str:
        return escape_text(re.sub(r"\s+", " ", text))

    @staticmethod
    def _join(pieces: list[_Piece]) -> str:
        """Concatenate, writing emphasis only where CommonMark will read it as emphasis
        (the delimiters must 'flank' the text), else just the text."""
        out = ""
        for i, piece in enumerate(pieces):
            if isinstance(piece, str):
                out += piece
                continue
            lead = len(piece.inner) - len(piece.inner.lstrip())
            trail = len(piece.inner) - len(piece.inner.rstrip())
            core = piece.inner.strip()
            out += piece.inner[:lead]
            after = _first_char(pieces[i + 1 :]) or " "
            before = out[-1:] or " "
            after = " " if trail else after
            if _can_emphasise(before, core, after):
                out += f"{piece.marker}{core}{piece.marker}"
            else:
                out += core
            out += piece.inner[len(piece.inner) - trail :] if trail else ""
        return out


_LIST_START = re.compile(r"^(- |\d+\. )")


def _join_item(blocks: list[str]) -> str:
    """A list item's blocks; a nested list follows its line directly (the list stays tight)."""
    out = ""
    for block in blocks:
        if out:
            out += "\n" if _LIST_START.match(block) else "\n\n"
        out += block
    return out


def _first_char(pieces: list[_Piece]) -> str:
    for piece in pieces:
        text = piece if isinstance(piece, str) else piece.marker
        if text:
            return text[0]
    return ""


def _can_emphasise(before: str, core: str, after: str) -> bool:
    """CommonMark's flanking rule, simplified: a delimiter next to punctuation inside must
    have white space or punctuation outside."""

    def punct(c: str) -> bool:
        return not c.isalnum() and not c.isspace()

    if not core or core[0] == "\\" or core[-1] == "\\":
        return False
    opens = not punct(core[0]) or before.isspace() or punct(before)
    closes = not punct(core[-1]) or after.isspace() or punct(after)
    return opens and closes


def _code_span(code: str) -> str:
    code = re.sub(r"\s+", " ", code)
    if not code.strip():
        return code
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if code.startswith("`") or code.endswith("`") else ""
    return f"{ticks}{pad}{code}{pad}{ticks}"


# ----------------------------------------------------------------------------------------
# Excerpts: the first N words, ending at a sentence boundary

_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s|$)")


def count_words(text: str) -> int:
    return len(text.split())


def truncate(root: _Element, max_words: int) -> None:
    """Keep the first ``max_words`` words of ``root`` (in place), cut at the end of a
    sentence. A first sentence longer than the limit is kept whole."""
    count = 0
    last_whole: _Element | None = None
    text_kept = False  # a paragraph (not just a heading) is in the excerpt
    for leaf in _leaf_blocks(root):
        text = leaf.text_content()
        words = count_words(text)
        if count + words <= max_words:
            count += words
            last_whole = leaf
            text_kept = text_kept or (leaf.tag not in _HEADINGS and words > 0)
            continue
        cut = _sentence_cut(text, max_words - count, must_take=not text_kept)
        if cut is None:
            if last_whole is None:
                return
            _remove_following(last_whole, root)
        else:
            _cut_text(leaf, cut)
            _remove_following(leaf, root)
        break
    _drop_trailing_headings(root)


def _leaf_blocks(root: _Element) -> Iterator[_Element]:
    for el in root.iter():
        if (
            el is not root
            and isinstance(el.tag, str)
            and el.tag in _BLOCK_TAGS
            and not any(
                isinstance(d.tag, str) and d.tag in _BLOCK_TAGS for d in el.iterdescendants()
            )
        ):
            yield el


def _sentence_cut(text: str, allowed: int, *, must_take: bool) -> int | None:
    """The character offset to cut ``text`` at, or None to keep none of it."""
    best = None
    first = None
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        first = first if first is not None else end
        if count_words(text[:end]) <= allowed:
            best = end
        else:
            break
    if best is not None:
        return best
    if must_take:
        return first if first is not None else len(text)
    return None


def text_pieces(el: _Element) -> Iterator[tuple[_Element, str]]:
    """Every (element, "text" | "tail") inside ``el``, in reading order."""
    yield el, "text"
    for child in el:
        yield from text_pieces(child)
        yield child, "tail"


def _cut_text(block: _Element, offset: int) -> None:
    pos = 0
    for node, attr in list(text_pieces(block)):
        text = getattr(node, attr) or ""
        if pos + len(text) >= offset:
            setattr(node, attr, text[: offset - pos])
            if attr == "text":
                for child in list(node):
                    node.remove(child)
            _remove_after(node, block, keep_tail=attr == "tail")
            return
        pos += len(text)


def _remove_after(node: _Element, top: _Element, *, keep_tail: bool) -> None:
    """Remove everything after ``node`` inside ``top`` (the node's tail too, unless kept)."""
    if not keep_tail and node is not top:
        node.tail = None
    current = node
    while current is not top:
        parent = current.getparent()
        for sibling in list(current.itersiblings()):
            parent.remove(sibling)
        if parent is not top:
            parent.tail = None
        current = parent


def _remove_following(block: _Element, root: _Element) -> None:
    _remove_after(block, root, keep_tail=False)


def _drop_trailing_headings(root: _Element) -> None:
    """An excerpt should not end on a heading whose section was cut away."""
    while True:
        leaves = list(_leaf_blocks(root))
        if not leaves or leaves[-1].tag not in _HEADINGS:
            return
        leaves[-1].getparent().remove(leaves[-1])
