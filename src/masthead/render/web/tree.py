"""The document tree → HTML, every piece of text escaped.

The tree (:mod:`masthead.content.markdown`) holds no HTML from the author: raw tags in the
Markdown are text, and link URLs were already filtered by ``safe_url``. This module builds
the markup itself, so the only tags in the output are the ones written here, and every
string from the content passes through :func:`markupsafe.escape`. No HTML sanitiser is
needed because no outside HTML is ever inserted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from ...content.markdown import safe_url

URL_SAFE = "!#$%&'()*+,-./:;=?@[]~_"
"""Characters left as they are in a link; others (spaces, quotes, <, >, …) are %-encoded."""


def href(url: str) -> str:
    """A URL as an attribute value must be written: characters a URL may not hold are
    %-encoded (existing %-escapes are kept), so the link is valid and cannot break out."""
    return quote(url.strip(), safe=URL_SAFE)


ImageURL = Callable[[str], str | None]
"""Maps an image ``src`` from the tree to the URL the page should use (None: not local)."""


def render_blocks(
    blocks: list[dict[str, Any]], image_url: ImageURL, heading_shift: int = 0
) -> Markup:
    """HTML for a list of blocks. Body headings (levels 2–4 under the item's title) move
    down by ``heading_shift`` levels where the item's title is itself an ``h2``."""
    return Markup("").join(_block(b, image_url, heading_shift) for b in blocks)


def render_inlines(inlines: list[dict[str, Any]]) -> Markup:
    """HTML for a run of inlines."""
    return Markup("").join(_inline(i) for i in inlines)


def _block(block: dict[str, Any], image_url: ImageURL, shift: int) -> Markup:
    t = block["type"]
    if t == "paragraph":
        return Markup("<p>%s</p>\n") % render_inlines(block["children"])
    if t == "heading":
        level = min(block["level"] + shift, 6)
        return Markup("<h%d>%s</h%d>\n") % (level, render_inlines(block["children"]), level)
    if t == "list":
        items = Markup("").join(
            Markup("<li>%s</li>") % _list_item(item, image_url, shift) for item in block["items"]
        )
        if block["ordered"]:
            start = int(block.get("start", 1))
            attr = Markup(' start="%d"') % start if start != 1 else Markup("")
            return Markup("<ol%s>%s</ol>\n") % (attr, items)
        return Markup("<ul>%s</ul>\n") % items
    if t == "quote":
        return Markup("<blockquote>%s</blockquote>\n") % render_blocks(
            block["children"], image_url, shift
        )
    if t == "code":
        return Markup("<pre><code>%s</code></pre>\n") % block["text"]
    if t == "image":
        return figure(block["src"], block.get("alt", ""), block.get("caption", ""), image_url)
    if t == "rule":
        return Markup("<hr>\n")
    if t == "table":
        return _table(block)
    return Markup("")


def _list_item(blocks: list[dict[str, Any]], image_url: ImageURL, shift: int) -> Markup:
    # A tight list item is one paragraph: print its text without a <p> around it.
    if len(blocks) == 1 and blocks[0]["type"] == "paragraph":
        return render_inlines(blocks[0]["children"])
    return render_blocks(blocks, image_url, shift)


def figure(src: str, alt: str, caption: str, image_url: ImageURL) -> Markup:
    """An image with its alt text and caption; an image that is not a local file becomes a
    plain link (the site makes no request to another host)."""
    url = image_url(src)
    if url is None:
        safe = safe_url(src)
        label = alt or src
        if safe is None:
            return Markup("<p>%s</p>\n") % label
        return Markup('<p><a href="%s">%s</a></p>\n') % (href(safe), label)
    cap = Markup("<figcaption>%s</figcaption>") % caption if caption else Markup("")
    return Markup('<figure><img src="%s" alt="%s" loading="lazy">%s</figure>\n') % (
        url,
        alt,
        cap,
    )


def _table(block: dict[str, Any]) -> Markup:
    head = Markup("")
    if block["header"]:
        cells = Markup("").join(
            Markup('<th scope="col">%s</th>') % render_inlines(c) for c in block["header"]
        )
        head = Markup("<thead><tr>%s</tr></thead>") % cells
    rows = Markup("").join(
        Markup("<tr>%s</tr>")
        % Markup("").join(Markup("<td>%s</td>") % render_inlines(c) for c in row)
        for row in block["rows"]
    )
    return Markup('<div class="table"><table>%s<tbody>%s</tbody></table></div>\n') % (head, rows)


def _inline(node: dict[str, Any]) -> Markup:
    t = node["type"]
    if t == "text":
        return escape(node["text"])
    if t == "code":
        return Markup("<code>%s</code>") % node["text"]
    if t == "break":
        return Markup("<br>")
    if t in ("emph", "strong", "strike"):
        tag = {"emph": "em", "strong": "strong", "strike": "s"}[t]
        return Markup("<%s>%s</%s>") % (Markup(tag), render_inlines(node["children"]), Markup(tag))
    if t == "link":
        # The tree's URLs were filtered when parsed; filter again so a hand-made tree is safe.
        url = safe_url(node["url"])
        inner = render_inlines(node["children"])
        return Markup('<a href="%s">%s</a>') % (href(url), inner) if url else inner
    if t == "image":  # only inside running text, where the tree keeps its alt text
        return escape(node.get("alt", ""))
    return Markup("")
