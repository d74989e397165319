"""The few HTML pages of the public endpoints: escaped text, no script, no outside assets."""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

SECURITY_HEADERS = {
    # The token in the URL must not leak to other sites through the Referer header.
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

FILE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    "X-Content-Type-Options": "nosniff",
}
"""Sent with every file that is not a page, a script or a stylesheet: an author's SVG (or a
feed) opened by itself runs nothing, loads nothing and gets an opaque origin (``sandbox``),
so even a script that got past :func:`masthead.render.svg.clean_svg` could not reach the
site's cookies or ``/admin/``."""

_STYLE = """
body{font:1.05rem/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;
color:#1a1a1a;background:#fff}
h1{font-size:1.4rem}
label{display:block;margin:.8rem 0 .2rem}
input[type=email],input[type=text]{width:100%;padding:.5rem;font:inherit;box-sizing:border-box}
button{margin-top:1rem;padding:.6rem 1.2rem;font:inherit;cursor:pointer}
.hp{position:absolute;left:-10000px}
@media (prefers-color-scheme:dark){body{color:#eee;background:#161616}}
"""


def page(
    title: str,
    paragraphs: list[str],
    *,
    lang: str,
    publication: str,
    form: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    """A page with a title, some paragraphs of plain text (escaped here) and an optional
    form (already-built markup from :func:`button_form` or :func:`subscribe_form`)."""
    body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    html = (
        f'<!doctype html><html lang="{escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)} · {escape(publication)}</title><style>{_STYLE}</style></head>"
        f"<body><main><p>{escape(publication)}</p><h1>{escape(title)}</h1>{body}{form}"
        "</main></body></html>"
    )
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def button_form(action: str, label: str, *, one_click: bool = False) -> str:
    """A POST form with one button (the confirm and unsubscribe pages); ``one_click``
    posts the same body as a mail client's RFC 8058 one-click unsubscribe."""
    hidden = '<input type="hidden" name="List-Unsubscribe" value="One-Click">' if one_click else ""
    return (
        f'<form method="post" action="{escape(action)}">{hidden}'
        f'<button type="submit">{escape(label)}</button></form>'
    )


def subscribe_form(action: str, words: dict[str, str], email: str = "") -> str:
    return (
        f'<form method="post" action="{escape(action)}">'
        f'<label for="email">{escape(words["subscribe_email"])}</label>'
        f'<input id="email" name="email" type="email" required value="{escape(email)}">'
        f'<label for="name">{escape(words["subscribe_name"])}</label>'
        '<input id="name" name="name" type="text" maxlength="200">'
        # A field people do not see: bots fill it in; a filled one is quietly ignored.
        '<div class="hp" aria-hidden="true"><label for="website">Website</label>'
        '<input id="website" name="website" type="text" tabindex="-1" autocomplete="off"></div>'
        f'<button type="submit">{escape(words["subscribe_button"])}</button></form>'
    )
