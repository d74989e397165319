"""The document tree → the email edition's ``text/plain`` part, written to read well on its own:
headings underlined, lists marked, links as "text <url>", attribution and source lines."""

from __future__ import annotations

import textwrap
from typing import Any

from .layout import EditionData, ItemData
from .to_html import absolute_url, image_url

WIDTH = 72


def render_text(data: EditionData, unsubscribe_token: str) -> str:
    """The whole issue as plain text; ``unsubscribe_token`` is replaced per recipient."""
    out: list[str] = [data.name.upper()]
    if data.tagline:
        out.append(data.tagline)
    out.append(data.issue_line)
    if data.issue_title:
        out.append(data.issue_title)
    out.append("")
    out.append(f"{data.labels['view_in_browser']}: {data.web_url}")
    if data.pdf_url:
        out.append(f"{data.labels['pdf_edition']}: {data.pdf_url}")
    out += ["", _underline(data.labels["inside_this_issue"].upper(), "=")]
    out += [f"- {item.title}" for item in data.items]
    for item in data.items:
        out += ["", "", *_item(data, item)]
    out += ["", "-- ", *data.footer_lines]
    out.append(f"{data.labels['unsubscribe']}: {unsubscribe_token}")
    out.append(data.labels["unsubscribe_note"])
    return "\n".join(line.rstrip() for line in out) + "\n"


def _underline(text: str, char: str) -> str:
    return f"{text}\n{char * min(len(text), WIDTH)}"


def _wrap(text: str, indent: str = "", first: str | None = None) -> list[str]:
    lines: list[str] = []
    for n, para in enumerate(text.split("\n")):
        lead = first if (first is not None and n == 0) else indent
        wrapped = textwrap.wrap(
            para,
            WIDTH,
            initial_indent=lead,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        lines.extend(wrapped or [lead.rstrip()])
    return lines


def _item(data: EditionData, item: ItemData) -> list[str]:
    out = [_underline(item.title.upper(), "=")]
    if item.kind == "letter":
        out += [item.letter_date.rjust(WIDTH), ""]
        if item.to:
            out += [*item.to, ""]
        if item.salutation:
            out += [item.salutation, ""]
    elif item.byline:
        out += [*_wrap(item.byline), ""]
    if item.summary and item.kind == "article":
        out += [*_wrap(item.summary), ""]
    if item.image:
        out += [*_image(data, item.image["src"], item.image["alt"], item.image["caption"]), ""]
    for block in item.body:
        out += [*_block(data, block, ""), ""]
    if item.kind == "letter" and item.signed:
        out += [*item.signed, ""]
    if item.source_line:
        label, url = item.source_line
        out.append(f"{label} {url}")
    while out and out[-1] == "":
        out.pop()
    return out


def _image(data: EditionData, src: str, alt: str, caption: str) -> list[str]:
    url = image_url(data, src)
    text = f"[{data.labels['image']}: {alt}]" if alt else f"[{data.labels['image']}]"
    lines = _wrap(text + (f" <{url}>" if url else ""))
    return lines + (_wrap(caption) if caption else [])


def _block(data: EditionData, block: dict[str, Any], indent: str) -> list[str]:
    t = block["type"]
    if t == "paragraph":
        return _wrap(inline_text(block["children"], data.web_url), indent)
    if t == "heading":
        text = inline_text(block["children"], data.web_url)
        return [indent + text, indent + ("-" if block["level"] <= 2 else "~") * len(text)]
    if t == "list":
        lines: list[str] = []
        number = int(block.get("start", 1))
        for item in block["items"]:
            marker = f"{number}. " if block.get("ordered") else "- "
            number += 1
            sub = indent + " " * len(marker)
            first = True
            for child in item:
                child_lines = _block(data, child, sub)
                if first and child_lines:
                    child_lines[0] = indent + marker + child_lines[0][len(sub) :]
                    first = False
                lines += child_lines
        return lines
    if t == "quote":
        lines = []
        for child in block["children"]:
            lines += [*_block(data, child, indent + "> "), indent + ">"]
        return lines[:-1]
    if t == "code":
        return [indent + "    " + line for line in block["text"].split("\n")]
    if t == "image":
        return [
            indent + line
            for line in _image(data, block["src"], block.get("alt", ""), block.get("caption", ""))
        ]
    if t == "rule":
        return [indent + "* * *"]
    if t == "table":
        rows = [block["header"], *block["rows"]]
        return [
            indent + " | ".join(inline_text(cell, data.web_url) for cell in row) for row in rows
        ]
    return []


def inline_text(nodes: list[dict[str, Any]], base: str) -> str:
    """Inlines as plain text; a link reads "text <url>" (just the URL when they agree)."""
    out: list[str] = []
    for node in nodes:
        t = node["type"]
        if t in ("text", "code"):
            out.append(node["text"])
        elif t in ("emph", "strong", "strike"):
            mark = {"emph": "_", "strong": "*", "strike": "~"}[t]
            out.append(mark + inline_text(node["children"], base) + mark)
        elif t == "link":
            text = inline_text(node["children"], base)
            url = absolute_url(base, node["url"])
            if not url or text == url:
                out.append(text)
            elif text.strip() in (url.split("://", 1)[-1], url.removeprefix("mailto:")):
                out.append(url)
            else:
                out.append(f"{text} <{url}>")
        elif t == "break":
            out.append("\n")
        elif t == "image":
            out.append(node.get("alt", ""))
    return "".join(out)
