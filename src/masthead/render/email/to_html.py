"""The document tree → the email edition's HTML (table layout, CSS inlined by ``css-inline``).

Everything from content is escaped here: the tree holds text, never markup, so an item that
says ``<script>`` shows ``<script>``. Per-subscriber parts (the unsubscribe link) are left as
placeholder tokens that :mod:`masthead.render.email.message` fills in per recipient.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any
from urllib.parse import urljoin

from ...content.markdown import safe_url
from .layout import EditionData, ItemData

# Colours chosen to read in light mode and to survive a client's automatic dark-mode inversion
# (mid-tone accent, never pure black on pure white); `prefers-color-scheme` refines them where
# the client honours media queries.
CSS = """
body { margin: 0; padding: 0; background-color: #eef1f4; color: #1f2933; }
table { border-collapse: collapse; }
.wrapper { width: 100%; background-color: #eef1f4; }
.container { width: 600px; max-width: 600px; background-color: #ffffff; }
td { font-family: Georgia, 'Times New Roman', serif; font-size: 17px; line-height: 1.55;
     color: #1f2933; }
.topbar { padding: 10px 24px; font-family: Arial, Helvetica, sans-serif; font-size: 13px;
          color: #52606d; background-color: #eef1f4; text-align: center; }
.masthead { padding: 28px 24px 18px; border-bottom: 3px solid #1d4e6b; text-align: center; }
.pubname { margin: 0; font-size: 34px; line-height: 1.15; color: #1d4e6b; font-weight: bold; }
.tagline { margin: 6px 0 0; font-size: 15px; font-style: italic; color: #52606d; }
.issueline { margin: 10px 0 0; font-family: Arial, Helvetica, sans-serif; font-size: 13px;
             letter-spacing: 1px; text-transform: uppercase; color: #52606d; }
.contents { padding: 18px 24px; background-color: #f5f7fa; }
.contents h2 { margin: 0 0 8px; font-size: 16px; font-family: Arial, Helvetica, sans-serif;
               text-transform: uppercase; letter-spacing: 1px; color: #1d4e6b; }
.contents ul { margin: 0; padding-left: 20px; }
.contents li { margin: 2px 0; font-size: 16px; }
.item { padding: 24px 24px 8px; border-bottom: 1px solid #d9e2ec; }
.item h2 { margin: 0 0 6px; font-size: 25px; line-height: 1.25; color: #102a43; }
.item h3 { margin: 22px 0 8px; font-size: 20px; color: #102a43; }
.item h4 { margin: 18px 0 6px; font-size: 18px; color: #102a43; }
.item p { margin: 0 0 14px; }
.byline { font-size: 15px; font-style: italic; color: #52606d; }
.summary { font-style: italic; }
.source { font-size: 15px; }
.letter-date { text-align: right; }
.brief h2 { font-size: 20px; }
blockquote { margin: 0 0 14px; padding: 2px 0 2px 16px; border-left: 3px solid #1d4e6b;
             color: #334e68; }
pre { margin: 0 0 14px; padding: 10px; background-color: #f5f7fa; font-size: 14px;
      white-space: pre-wrap; word-wrap: break-word; }
code { font-family: Menlo, Consolas, monospace; font-size: 15px; }
a { color: #1d6fa5; text-decoration: underline; }
img { display: block; max-width: 100%; height: auto; border: 0; }
figure { margin: 0 0 14px; }
figcaption { font-size: 14px; font-style: italic; color: #52606d; padding-top: 4px; }
.datatable { width: 100%; margin: 0 0 14px; font-size: 15px; }
.datatable th { text-align: left; border-bottom: 2px solid #1d4e6b; padding: 4px 6px;
                font-family: Arial, Helvetica, sans-serif; font-size: 14px; }
.datatable td { border-bottom: 1px solid #d9e2ec; padding: 4px 6px; font-size: 15px; }
.footer { padding: 20px 24px 28px; font-family: Arial, Helvetica, sans-serif; font-size: 13px;
          line-height: 1.5; color: #52606d; background-color: #f5f7fa; }
.footer p { margin: 0 0 8px; }
"""

# Kept as a <style> block (media queries cannot be inlined): narrow screens and dark mode.
CSS_KEPT = """
@media only screen and (max-width: 620px) {
  .container { width: 100% !important; }
  .item, .masthead, .contents, .footer { padding-left: 14px !important;
                                         padding-right: 14px !important; }
  .pubname { font-size: 28px !important; }
}
@media (prefers-color-scheme: dark) {
  body, .wrapper, .topbar { background-color: #111820 !important; }
  .container, .masthead, .item { background-color: #1b2631 !important; }
  .contents, .footer, pre { background-color: #16202a !important; }
  td, p, li, h2, h3, h4, blockquote, figcaption { color: #e4e9ee !important; }
  .pubname, .contents h2 { color: #8cc4e8 !important; }
  a { color: #8cc4e8 !important; }
}
"""

PREHEADER_PAD = "&#8204;&nbsp;" * 60  # keeps clients from filling the preview with body text


def render_html(data: EditionData, unsubscribe_token: str) -> str:
    """The email edition as one HTML document with inlined CSS; ``unsubscribe_token`` is a
    placeholder (ASCII, no markup characters) replaced per recipient."""
    import css_inline

    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{escape(data.lang)}" dir="{data.dir}">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light dark">',
        '<meta name="supported-color-schemes" content="light dark">',
        f"<title>{escape(data.subject)}</title>",
        f"<style>{CSS}</style>",
        f"<style>{CSS_KEPT}</style>",
        "</head>",
        '<body style="margin:0;padding:0">',
        '<div class="preheader" style="display:none;max-height:0;overflow:hidden;'
        'mso-hide:all;font-size:1px;line-height:1px;opacity:0">'
        f"{escape(data.preheader)}{PREHEADER_PAD}</div>",
        '<table role="presentation" class="wrapper" width="100%" cellpadding="0" '
        'cellspacing="0" border="0"><tr><td align="center">',
        '<table role="presentation" class="container" width="600" cellpadding="0" '
        'cellspacing="0" border="0">',
        _topbar(data),
        _masthead(data),
        _contents(data),
        *(_item(data, item) for item in data.items),
        _footer(data, unsubscribe_token),
        "</table>",
        "</td></tr></table>",
        "</body>",
        "</html>",
    ]
    html = "\n".join(parts)
    return css_inline.CSSInliner(
        keep_at_rules=True, load_remote_stylesheets=False, minify_css=True
    ).inline(html)


def _row(cls: str, content: str, *, id_: str | None = None) -> str:
    anchor = f' id="{escape(id_)}"' if id_ else ""
    return f'<tr><td class="{cls}"{anchor}>{content}</td></tr>'


def _link(url: str, text: str) -> str:
    return f'<a href="{escape(url)}">{escape(text)}</a>'


def _topbar(data: EditionData) -> str:
    links = [_link(data.web_url, data.labels["view_in_browser"])]
    if data.pdf_url:
        links.append(_link(data.pdf_url, data.labels["pdf_edition"]))
    return _row("topbar", " &nbsp;|&nbsp; ".join(links))


def _masthead(data: EditionData) -> str:
    title = f'<p class="issueline">{escape(data.issue_line)}</p>'
    if data.issue_title:
        title += f'<p class="tagline">{escape(data.issue_title)}</p>'
    tagline = f'<p class="tagline">{escape(data.tagline)}</p>' if data.tagline else ""
    return _row("masthead", f'<h1 class="pubname">{escape(data.name)}</h1>{tagline}{title}')


def _contents(data: EditionData) -> str:
    entries = "".join(
        f'<li><a href="#{escape(item.slug)}">{escape(item.title)}</a></li>' for item in data.items
    )
    return _row(
        "contents", f"<h2>{escape(data.labels['inside_this_issue'])}</h2><ul>{entries}</ul>"
    )


def _item(data: EditionData, item: ItemData) -> str:
    out: list[str] = [f"<h2>{escape(item.title)}</h2>"]
    if item.kind == "letter":
        out.append(f'<p class="letter-date">{escape(item.letter_date)}</p>')
        if item.to:
            out.append("<p>" + "<br>".join(escape(line) for line in item.to) + "</p>")
        if item.salutation:
            out.append(f"<p>{escape(item.salutation)}</p>")
    elif item.byline:
        out.append(f'<p class="byline">{escape(item.byline)}</p>')
    if item.summary and item.kind == "article":
        out.append(f'<p class="summary">{escape(item.summary)}</p>')
    if item.image:
        out.append(_figure(data, item.image["src"], item.image["alt"], item.image["caption"]))
    out.extend(_block(data, block) for block in item.body)
    if item.kind == "letter" and item.signed:
        out.append("<p>" + "<br>".join(escape(line) for line in item.signed) + "</p>")
    if item.source_line:
        label, url = item.source_line
        out.append(f'<p class="source">{escape(label)} {_link(url, url)}</p>')
    cls = "item brief" if item.kind == "brief" else "item"
    return _row(cls, "".join(out), id_=item.slug)


def image_url(data: EditionData, src: str) -> str | None:
    """Where a mail client can fetch an item's image: absolute http(s) addresses as they are,
    relative ones beside the issue's web edition (where the web edition publishes them)."""
    if src.lower().startswith(("http://", "https://")):
        return safe_url(src)
    if ":" in src.split("/")[0] or src.startswith(("/", "\\")) or ".." in src.split("/"):
        return None
    return urljoin(data.web_url, src)


def absolute_url(base: str, url: str) -> str | None:
    """A link target a mail client can follow: safe (per ``safe_url``) and absolute."""
    url = safe_url(url) or ""
    if not url:
        return None
    if re.match(r"^(https?|mailto|tel):", url, re.I):
        return url
    return urljoin(base, url)


def _figure(data: EditionData, src: str, alt: str, caption: str) -> str:
    url = image_url(data, src)
    if url is None:
        return f"<p>{escape(alt)}</p>" if alt else ""
    img = f'<img src="{escape(url)}" alt="{escape(alt)}" width="552">'
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{img}{cap}</figure>"


def _block(data: EditionData, block: dict[str, Any]) -> str:
    t = block["type"]
    if t == "paragraph":
        return f"<p>{_inlines(block['children'], data.web_url)}</p>"
    if t == "heading":
        level = min(max(int(block["level"]) + 1, 3), 4)  # item titles are h2 in the email
        return f"<h{level}>{_inlines(block['children'], data.web_url)}</h{level}>"
    if t == "list":
        tag = "ol" if block.get("ordered") else "ul"
        start = f' start="{int(block.get("start", 1))}"' if tag == "ol" else ""
        items = "".join(
            "<li>" + "".join(_block(data, b) for b in item) + "</li>" for item in block["items"]
        )
        return f"<{tag}{start}>{items}</{tag}>"
    if t == "quote":
        return (
            "<blockquote>" + "".join(_block(data, b) for b in block["children"]) + "</blockquote>"
        )
    if t == "code":
        return f"<pre><code>{escape(block['text'])}</code></pre>"
    if t == "image":
        return _figure(data, block["src"], block.get("alt", ""), block.get("caption", ""))
    if t == "rule":
        return '<hr style="border:0;border-top:1px solid #d9e2ec">'
    if t == "table":
        head = "".join(f"<th>{_inlines(cell, data.web_url)}</th>" for cell in block["header"])
        rows = "".join(
            "<tr>" + "".join(f"<td>{_inlines(cell, data.web_url)}</td>" for cell in row) + "</tr>"
            for row in block["rows"]
        )
        return (
            '<table role="presentation" class="datatable" cellpadding="0" cellspacing="0">'
            f"<tr>{head}</tr>{rows}</table>"
        )
    return ""


def _inlines(nodes: list[dict[str, Any]], base: str) -> str:
    """Inline nodes as HTML; relative links resolve against the issue's web edition."""
    out: list[str] = []
    for node in nodes:
        t = node["type"]
        if t == "text":
            out.append(escape(node["text"]))
        elif t == "code":
            out.append(f"<code>{escape(node['text'])}</code>")
        elif t in ("emph", "strong", "strike"):
            tag = {"emph": "em", "strong": "strong", "strike": "s"}[t]
            out.append(f"<{tag}>{_inlines(node['children'], base)}</{tag}>")
        elif t == "link":
            url = absolute_url(base, node["url"])
            inner = _inlines(node["children"], base)
            out.append(f'<a href="{escape(url)}">{inner}</a>' if url else inner)
        elif t == "break":
            out.append("<br>")
        elif t == "image":
            out.append(escape(node.get("alt", "")))
    return "".join(out)


def _footer(data: EditionData, unsubscribe_token: str) -> str:
    lines = [f"<p>{escape(line)}</p>" for line in data.footer_lines]
    lines.append(
        f'<p><a href="{unsubscribe_token}">{escape(data.labels["unsubscribe"])}</a>'
        f" &middot; {escape(data.labels['unsubscribe_note'])}</p>"
    )
    return _row("footer", "".join(lines))
