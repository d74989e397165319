"""Author SVGs keep their drawing and lose everything that could run or read a file.

Each payload is a way a browser has been made to run script from an SVG; the cleaned file is
parsed again and checked for anything executable, whatever the payload's spelling."""

from __future__ import annotations

import re
import unicodedata

import pytest
from lxml import etree

from masthead.render.svg import clean_svg, safe_link

SVG = '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">{}</svg>'
RECT = '<rect width="10" height="10" fill="url(#g)"/>'

PAYLOADS = {
    "tab entity in href": '<a href="jav&#x09;ascript:alert(1)">' + RECT + "</a>",
    "newline entity in xlink": '<a xlink:href="java&#10;script:alert(1)">' + RECT + "</a>",
    "cr and nul-ish entities": '<a href="&#13;j&#x0A;a&#x0D;vascript:alert(1)">' + RECT + "</a>",
    "leading space and case": '<a href="   JaVaScRiPt:alert(1)">' + RECT + "</a>",
    "unicode spaces": '<a href="java&#x2028;script&#xA0;:alert(1)">' + RECT + "</a>",
    "zero width": '<a href="java&#x200B;script:alert(1)">' + RECT + "</a>",
    "entity-encoded letters": '<a href="&#106;&#97;vascript:alert(1)">' + RECT + "</a>",
    "other xlink prefix": (
        '<a xmlns:l="http://www.w3.org/1999/xlink" l:href="javascript:alert(1)">' + RECT + "</a>"
    ),
    "data html link": '<a href="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;">'
    + RECT
    + "</a>",
    "vbscript": '<a href="vbscript:msgbox(1)">' + RECT + "</a>",
    "protocol-relative": '<a href="//evil.example/x">' + RECT + "</a>",
    "backslash host": '<a href="/\\evil.example/x">' + RECT + "</a>",
    "nested anchors": (
        '<a href="https://ok.example/"><a href="javascript:alert(1)">' + RECT + "</a></a>"
    ),
    "animate values": (
        '<a href="#x"><animate attributeName="href" values="https://x;javascript:alert(1)"/>'
        + RECT
        + "</a>"
    ),
    "animate xlink:href": (
        '<a><animate attributeName="xlink:href" to="javascript:alert(1)" begin="0s"/>'
        + RECT
        + "</a>"
    ),
    "set to": '<a><set attributeName="href" to="javascript:alert(1)"/>' + RECT + "</a>",
    "animateMotion": '<animateMotion onbegin="alert(1)" dur="1s"/>' + RECT,
    "animateTransform": '<animateTransform onend="alert(1)" attributeName="transform"/>' + RECT,
    "discard": '<discard onbegin="alert(1)"/>' + RECT,
    "onload on root": RECT,  # the root's onload is added below
    "event attribute mixed case": '<rect OnClIcK="alert(1)" width="1" height="1"/>',
    "script": "<script>alert(1)</script>" + RECT,
    "script cdata": "<script><![CDATA[alert(1)]]></script>" + RECT,
    "xhtml script": '<h:script xmlns:h="http://www.w3.org/1999/xhtml">alert(1)</h:script>',
    "foreignObject": (
        '<foreignObject><body xmlns="http://www.w3.org/1999/xhtml">'
        '<iframe src="javascript:alert(1)"/></body></foreignObject>'
    ),
    "iframe embed object": (
        '<iframe src="javascript:alert(1)"/><embed src="javascript:alert(1)"/>'
        '<object data="javascript:alert(1)"/>'
    ),
    "style url javascript": '<rect style="fill: url(javascript:alert(1))" width="1"/>',
    "style expression": '<rect style="width: expression(alert(1))" width="1"/>',
    "style escapes": '<rect style="fill: url(j\\61vascript:alert(1))" width="1"/>',
    "style element import": '<style>@import url("https://evil.example/x.css");</style>' + RECT,
    "style element cdata url": (
        "<style><![CDATA[rect { fill: url(javascript:alert(1)) }]]></style>" + RECT
    ),
    "presentation url to a file": '<rect fill="url(../../secret.svg#a)" width="1"/>',
    "use external": (
        '<use href="https://evil.example/x.svg#a"/><use xlink:href="data:image/svg+xml,x#a"/>'
    ),
    "image svg data": '<image href="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4="/>',
    "image file": '<image href="../../private.png" width="10" height="10"/>',
    "image file xlink": '<image xlink:href="file:///etc/passwd" width="10" height="10"/>',
    "feImage file": '<filter id="f"><feImage href="../../private.png"/></filter>',
    "unknown element": '<handler ev:event="load">alert(1)</handler>',
    "xml:base": (
        '<a xml:base="javascript:alert(1)//" href="x">' + RECT + "</a>"
        '<a xml:base="https://evil.example/" href="x">' + RECT + "</a>"
    ),
    "processing instruction": '<?xml-stylesheet href="javascript:alert(1)"?>' + RECT,
}


def _squeezed(value: str) -> str:
    return "".join(
        ch
        for ch in value
        if not ch.isspace() and unicodedata.category(ch) not in ("Cc", "Cf", "Zs", "Zl", "Zp")
    ).lower()


def assert_inert(cleaned: bytes) -> None:
    """Nothing in the cleaned SVG runs, fetches another address or reads a file."""
    root = etree.fromstring(cleaned)
    for el in root.iter():
        if not isinstance(el.tag, str):
            pytest.fail(f"a {el!r} node survived")
        tag = etree.QName(el).localname
        assert tag not in {
            "script",
            "foreignObject",
            "iframe",
            "embed",
            "object",
            "animate",
            "set",
            "animateMotion",
            "animateTransform",
            "discard",
            "handler",
        }, tag
        assert etree.QName(el).namespace == "http://www.w3.org/2000/svg"
        for name, value in el.attrib.items():
            local = etree.QName(name).localname.lower()
            assert not local.startswith("on"), name
            squeezed = _squeezed(value)
            assert "javascript" not in squeezed and "vbscript" not in squeezed, (name, value)
            if local in ("href", "src"):
                if tag == "a":
                    relative = ":" not in squeezed.split("/")[0] and squeezed[:1] != "/"
                    assert re.match(r"(https?://|#)", squeezed) or relative, value
                else:
                    assert squeezed.startswith(("#", "data:image/png")), value
            for url in re.findall(r"url\(([^)]*)\)", squeezed):
                assert url.strip("'\"").startswith("#"), value
        if tag == "style":
            assert "@import" not in (el.text or "")
    assert b"alert" not in cleaned
    assert b"private.png" not in cleaned and b"etc/passwd" not in cleaned
    assert b"xml:base" not in cleaned and b"evil" not in cleaned


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_payload_is_made_inert(name: str) -> None:
    svg = SVG.format(PAYLOADS[name])
    if name == "onload on root":
        svg = svg.replace("<svg ", '<svg onload="alert(1)" ', 1)
    if name == "unknown element":
        svg = svg.replace("<svg ", '<svg xmlns:ev="http://www.w3.org/2001/xml-events" ', 1)
    cleaned = clean_svg(svg.encode("utf-8"))
    assert cleaned is not None
    assert_inert(cleaned)


def test_drawing_and_safe_links_stay() -> None:
    svg = SVG.format(
        '<defs><linearGradient id="g"><stop offset="0" stop-color="#fff"/></linearGradient>'
        "</defs><style>rect { fill: url(#g) }</style>"
        '<a href="https://example.org/more">' + RECT + "</a>"
        '<a xlink:href="#top"><circle r="2"/></a>'
        '<a href="other/page.html"><text x="1">read on</text></a>'
        '<a href="javascript:alert(1)"><text x="2">kept words</text></a>'
        '<use href="#g"/><image href="data:image/png;base64,iVBORw0KGgo=" width="1" height="1"/>'
    )
    cleaned = clean_svg(svg.encode())
    assert cleaned is not None
    assert_inert(cleaned)
    root = etree.fromstring(cleaned)
    ns = {"s": "http://www.w3.org/2000/svg", "x": "http://www.w3.org/1999/xlink"}
    hrefs = [a.get("href") or a.get("{http://www.w3.org/1999/xlink}href") for a in root.iter()]
    assert "https://example.org/more" in hrefs and "#top" in hrefs
    assert "other/page.html" in hrefs
    # the unsafe link is unwrapped: its text stays, its link goes
    assert "kept words" in "".join(root.itertext())
    assert len(root.xpath("//s:a", namespaces=ns)) == 3
    assert root.xpath("//s:use/@href", namespaces=ns) == ["#g"]
    assert root.xpath("//s:style", namespaces=ns)
    assert root.xpath("//s:rect[@fill='url(#g)']", namespaces=ns)


@pytest.mark.parametrize(
    "doctype",
    [
        # billion laughs: refused before anything is expanded
        '<!DOCTYPE svg [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;">]>',
        # an entity that hides a script link
        '<!DOCTYPE svg [<!ENTITY js "javascript:alert(1)">]>',
        # an external entity (a file of the server)
        '<!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
        '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">',
    ],
)
def test_doctype_is_refused(doctype: str) -> None:
    body = '<a href="&js;"><text>&d;</text></a>' if "ENTITY" in doctype else RECT
    body = body.replace("&d;", "&d;" if "ENTITY d" in doctype else "")
    body = body.replace("&js;", "&js;" if "ENTITY js" in doctype else "#")
    if "xxe" in doctype:
        body = "<text>&xxe;</text>"
    svg = doctype + SVG.format(body)
    assert clean_svg(svg.encode()) is None


@pytest.mark.parametrize(
    "data",
    [
        b"not xml",
        b'<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>',
        b"<svg><script>alert(1)</script></svg>",  # no SVG namespace: not an SVG document
        b'<svg xmlns="http://www.w3.org/2000/svg"><a href="&undefined;"/></svg>',
    ],
)
def test_what_is_not_an_svg_document_is_refused(data: bytes) -> None:
    assert clean_svg(data) is None


CSS_FETCHES = [
    # functions that fetch a plain string, any case, split by comments, in a presentation
    # attribute or a style element
    "<rect style=\"fill:IMAGE-SET('https://evil.example/t.png' 1x)\"/>",
    "<rect style=\"fill:image-set('t.png' 1x)\"/>",  # relative: still a fetch
    '<rect style="fill:cross-fade(&quot;https://evil.example/t.png&quot;)"/>',
    "<rect style=\"fill:image('https://evil.example/t.png')\"/>",
    "<rect style=\"fill:-moz-element(#a), src('https://evil.example/t.png')\"/>",
    '<rect stroke="-webkit-image-set(&quot;https://evil.example/t.png&quot; 2x)"/>',
    '<rect cursor="url(https://evil.example/c.png), auto"/>',
    '<rect filter="url(&quot;https://evil.example/f.svg#f&quot;"/>',
    '<rect marker-start="URL(  https://evil.example/m.svg#m"/>',
    '<rect mask="url(/mask.svg#m)"/>',
    '<rect clip-path="url(//evil.example/c.svg#c)"/>',
    # comments and case split the names
    "<style>rect{fill:ur/**/l(https://evil.example/t.png)}</style>",
    "<style>rect{fill:UrL(/**/https://evil.example/t.png)}</style>",
    "<style>rect{fill:image-/**/set('https://evil.example/t.png' 1x)}</style>",
    "<style>@im/**/port 'https://evil.example/x.css';</style>",
    "<style>@IMPORT 'https://evil.example/x.css';</style>",
    # a comment opened inside a string is no comment: what follows it is CSS
    "<style>rect{content:'/*';fill:url(https://evil.example/t.png)}</style>",
    "<style>@font-face{font-family:x;src:local(x)}</style>",
    # escapes, newlines and tabs
    "<style>rect{fill:u\\72l(https://evil.example/t.png)}</style>",
    "<style>rect{fill:image-set('htt&#9;ps:/&#10;/evil.example/t.png' 1x)}</style>",
    "<rect style=\"fill:url(#a) url(\n'https://evil.example/t.png'\n\"/>",
    # an unclosed url( or string runs to the end of the value
    "<style>rect{fill:url(  'https://evil.example/t.png</style>",
    '<rect fill="url(data:image/svg+xml,x#p"/>',
]


@pytest.mark.parametrize("payload", CSS_FETCHES)
def test_css_fetches_nothing(payload: str) -> None:
    """CSS anywhere (style attribute, <style>, presentation attribute) keeps url( only to a
    #fragment and no function or at-rule that fetches a string; else it is dropped."""
    cleaned = clean_svg(SVG.format(payload).encode())
    assert cleaned is not None
    assert b"evil" not in cleaned and b"t.png" not in cleaned and b"data:" not in cleaned
    assert b"/mask.svg" not in cleaned and b"src(" not in cleaned
    assert b"font-face" not in cleaned


def test_ordinary_css_stays() -> None:
    """What drawing tools write: comments, @media, quoted font names, fragments."""
    style = (
        "/* colours */ /* dark */ .a{fill:URL( '#g' );stroke:url(#g)}\n"
        "@media (prefers-color-scheme:dark){.a{fill:rgb(1 2 3 / 50%)}}\n"
        "text{font:12px/1.5 'Open Sans', serif}"
    )
    svg = SVG.format(
        f"<style>{style}</style>"
        '<rect class="a" style="fill:url(#g);stroke:url(&quot;#g&quot;" filter="url(#f)"'
        ' clip-path="url( #c)" marker-end="url(#m)" transform="translate(1 2) rotate(3)"/>'
    )
    cleaned = clean_svg(svg.encode())
    assert cleaned is not None
    root = etree.fromstring(cleaned)
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert root.xpath("//s:style/text()", namespaces=ns) == [style]
    rect = root.xpath("//s:rect", namespaces=ns)[0]
    assert set(rect.attrib) == {"class", "style", "filter", "clip-path", "marker-end", "transform"}


@pytest.mark.parametrize(
    ("link", "ok"),
    [
        ("https://example.org/", True),
        ("HTTP://example.org/", True),
        ("#frag", True),
        ("page.html", True),
        ("a/../b.html", True),
        ("../up.html", False),
        ("a/../../up.html", False),
        ("/root.html", False),
        ("//evil.example/", False),
        ("https:evil.example", False),
        ("ftp://example.org/", False),
        ("java\tscript:alert(1)", False),
        # percent-encoded dot segments: a browser reads %2e%2e as ..
        ("%2e%2e/admin/", False),
        ("a/%2E%2e/%2e./admin/", False),
        ("%252e%252e/admin/", False),  # decoded twice by a server
        ("%25252e%25252e/admin/", False),
        ("..%2fadmin/", False),
        ("a%5c..%5c..%5cadmin", False),  # a backslash is a slash to a browser
        ("..;x/admin/", False),  # a path parameter, .. to some servers
        ("a/..;/..;/admin/", False),
        ("a%3f/../../admin/", False),  # %3f is no query: the path climbs
        ("%2fadmin/", False),
        ("%2e/page.html", True),
        ("a/%2e%2e/b.html", True),
        ("100%25.html", True),
        ("\x01javascript:alert(1)", False),
        ("", False),
    ],
)
def test_safe_link(link: str, ok: bool) -> None:
    assert safe_link(link) is ok
