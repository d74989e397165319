"""Markdown → the document tree every edition renders.

The tree is plain JSON-able data (dicts and lists), so it can be handed to the Typst theme
as data, to Jinja for the web and email editions, and compared in tests. Raw HTML in the
Markdown is *not* interpreted: it becomes text, so ``<script>`` prints as ``<script>``.

Blocks::

    {"type": "paragraph", "children": [inline…]}
    {"type": "heading", "level": 2..4, "children": [inline…]}
    {"type": "list", "ordered": bool, "start": int, "items": [[block…], …]}
    {"type": "quote", "children": [block…]}
    {"type": "code", "text": str}
    {"type": "image", "src": str, "alt": str, "caption": str, "line": int}
    {"type": "rule"}
    {"type": "table", "header": [[inline…]…], "rows": [[[inline…]…]…]}

Inlines::

    {"type": "text", "text": str}      {"type": "code", "text": str}
    {"type": "emph" | "strong" | "strike", "children": [inline…]}
    {"type": "link", "url": str, "children": [inline…]}
    {"type": "break"}
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

Block = dict[str, Any]
Inline = dict[str, Any]

# Links an editor may mean; anything else (javascript:, data:, file:, vbscript: …) loses its link
# and keeps its text.
_SAFE_SCHEME = re.compile(r"^(https?:|mailto:|tel:|#|/|\./|\.\./|[^:/?#]+(/|$|\?|#))", re.I)


@cache
def _parser() -> MarkdownIt:
    # "commonmark" with html=False: tags in the text stay text. Tables and ~~strike~~ on.
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
        ["table", "strikethrough"]
    )


def safe_url(url: str) -> str | None:
    """The URL if it is safe to link to (http, https, mailto, tel, relative), else None."""
    url = url.strip()
    if not url or any(ord(c) < 32 for c in url):
        return None
    return url if _SAFE_SCHEME.match(url) else None


def parse_markdown(text: str, *, first_line: int = 1) -> list[Block]:
    """Parse Markdown into a list of blocks; ``first_line`` numbers lines for messages."""
    root = SyntaxTreeNode(_parser().parse(text))
    blocks = _blocks(root.children, first_line)
    _normalise_headings(blocks)
    return blocks


def _normalise_headings(blocks: list[Block]) -> None:
    """Body headings sit under the item's title (level 1) without skipping a level, whatever
    the author wrote (``##`` then ``####`` become levels 2 and 3): a tagged PDF (PDF/UA)
    and a screen reader's outline both need an unbroken hierarchy."""
    headings = [b for b in walk_blocks(blocks) if b["type"] == "heading"]
    levels = sorted({b["level"] for b in headings})
    mapping = {level: min(2 + i, 4) for i, level in enumerate(levels)}
    for block in headings:
        block["level"] = mapping[block["level"]]


def _blocks(nodes: list[SyntaxTreeNode], first_line: int) -> list[Block]:
    out: list[Block] = []
    for node in nodes:
        block = _block(node, first_line)
        if block is not None:
            out.append(block)
    return out


def _line(node: SyntaxTreeNode, first_line: int) -> int:
    return (node.map[0] if node.map else 0) + first_line


def _block(node: SyntaxTreeNode, first_line: int) -> Block | None:
    t = node.type
    if t == "paragraph":
        inlines = _inlines(node.children[0].children if node.children else [])
        lone = [i for i in inlines if not (i["type"] == "text" and not i["text"].strip())]
        if len(lone) == 1 and lone[0]["type"] == "image":
            image = dict(lone[0])
            image["type"] = "image"
            image["line"] = _line(node, first_line)
            return image
        # an image inside running text prints as its alt text
        inlines = [
            {"type": "text", "text": i["alt"]} if i["type"] == "image" else i for i in inlines
        ]
        return {"type": "paragraph", "children": inlines}
    if t == "heading":
        level = int(node.tag[1])
        return {"type": "heading", "level": level, "children": _inlines(_inline_children(node))}
    if t in ("bullet_list", "ordered_list"):
        start = int(node.attrs.get("start", 1)) if t == "ordered_list" else 1
        items = [_blocks(li.children, first_line) for li in node.children]
        return {"type": "list", "ordered": t == "ordered_list", "start": start, "items": items}
    if t == "blockquote":
        return {"type": "quote", "children": _blocks(node.children, first_line)}
    if t in ("fence", "code_block"):
        return {"type": "code", "text": node.content.rstrip("\n")}
    if t == "hr":
        return {"type": "rule"}
    if t == "table":
        return _table(node)
    if t == "html_block":  # only when html is enabled; kept literal all the same
        return {"type": "paragraph", "children": [{"type": "text", "text": node.content}]}
    return None


def _inline_children(node: SyntaxTreeNode) -> list[SyntaxTreeNode]:
    return node.children[0].children if node.children else []


def _table(node: SyntaxTreeNode) -> Block:
    header: list[list[Inline]] = []
    rows: list[list[list[Inline]]] = []
    for section in node.children:
        for tr in section.children:
            cells = [_inlines(_inline_children(cell)) for cell in tr.children]
            if section.type == "thead":
                header = cells
            else:
                rows.append(cells)
    return {"type": "table", "header": header, "rows": rows}


def _inlines(nodes: list[SyntaxTreeNode]) -> list[Inline]:
    out: list[Inline] = []
    for node in nodes:
        t = node.type
        if t in ("text", "html_inline"):
            _text(out, node.content)
        elif t == "softbreak":
            _text(out, " ")
        elif t == "hardbreak":
            out.append({"type": "break"})
        elif t == "code_inline":
            out.append({"type": "code", "text": node.content})
        elif t in ("em", "strong", "s"):
            kind = {"em": "emph", "strong": "strong", "s": "strike"}[t]
            out.append({"type": kind, "children": _inlines(node.children)})
        elif t == "link":
            children = _inlines(node.children)
            url = safe_url(str(node.attrs.get("href", "")))
            if url is None:
                out.extend(children)
            else:
                out.append({"type": "link", "url": url, "children": children})
        elif t == "image":
            alt = "".join(plain_text(_inlines(node.children)))
            out.append(
                {
                    "type": "image",
                    "src": str(node.attrs.get("src", "")),
                    "alt": alt,
                    "caption": str(node.attrs.get("title") or ""),
                }
            )
    return out


def _text(out: list[Inline], text: str) -> None:
    if out and out[-1]["type"] == "text":
        out[-1] = {"type": "text", "text": out[-1]["text"] + text}
    else:
        out.append({"type": "text", "text": text})


def plain_text(nodes: list[Any]) -> list[str]:
    """The text of inlines or blocks, as a list of strings (join as you need)."""
    out: list[str] = []
    for node in nodes:
        t = node.get("type")
        if t in ("text", "code"):
            out.append(node["text"])
        elif t == "break":
            out.append("\n")
        elif t == "image":
            out.append(node.get("alt", ""))
        elif t == "list":
            for item in node["items"]:
                out.extend(plain_text(item))
        elif t == "table":
            for row in [node["header"], *node["rows"]]:
                for cell in row:
                    out.extend(plain_text(cell))
        elif "children" in node:
            out.extend(plain_text(node["children"]))
    return out


def paragraphs(blocks: list[Block]) -> list[str]:
    """Each text-bearing block's plain text, in reading order (for tests, search, email)."""
    out: list[str] = []
    for block in blocks:
        t = block["type"]
        if t in ("paragraph", "heading"):
            out.append("".join(plain_text(block["children"])))
        elif t == "code":
            out.append(block["text"])
        elif t == "quote":
            out.extend(paragraphs(block["children"]))
        elif t == "list":
            for item in block["items"]:
                out.extend(paragraphs(item))
        elif t == "table":
            out.append(" ".join(plain_text([block])))
        elif t == "image" and block.get("caption"):
            out.append(block["caption"])
    return out


def walk_blocks(blocks: list[Block]):
    """Every block, depth first (lists, quotes included)."""
    for block in blocks:
        yield block
        if block["type"] == "quote":
            yield from walk_blocks(block["children"])
        elif block["type"] == "list":
            for item in block["items"]:
                yield from walk_blocks(item)
