"""Author SVGs made inert: what the web edition copies and what Typst typesets.

An SVG is a document that can run script when a reader opens it by itself (``<img>`` never
runs it, but the file's own address does). Rather than list what is dangerous, this keeps
what a drawing needs:

- elements of the SVG namespace from an allow-list (shapes, text, gradients, filters,
  ``<style>``); animation elements, ``<script>``, ``<foreignObject>`` and anything of another
  namespace are dropped with their content;
- attributes without a namespace, plus ``xlink:*``, ``xml:space`` and ``xml:lang``; never
  ``on*``;
- link targets (``href``, ``xlink:href``, ``src``) checked after removing every whitespace
  and control character (a browser drops them inside a URL: ``jav&#9;ascript:`` is
  ``javascript:``): an ``<a>`` keeps a plain http(s) URL, a ``#fragment`` or a relative path
  that stays inside (also once percent-decoded: ``%2e%2e`` is ``..``), else it is unwrapped
  (its drawing stays, its link goes); ``<use>`` keeps only a ``#fragment``; ``<image>`` and
  ``<feImage>`` only a fragment or an embedded raster
  image (``data:image/png``, jpeg, gif, webp): an SVG reads no other file, on the web or
  in print;
- CSS (``style`` attributes and elements, and every other attribute, as ``fill`` or
  ``cursor`` are CSS values) with ``url(`` only to a fragment, no string that starts as an
  address, no ``image-set()`` or other function or at-rule that fetches a string, no
  ``expression``, script schemes or escapes that could hide them (see :func:`safe_css`);
- no DOCTYPE (entity declarations: expansion bombs, external entities), no processing
  instructions, no comments.

The server adds ``Content-Security-Policy: default-src 'none'; sandbox`` to every SVG as a
second wall (:mod:`masthead.web.app`).
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
from typing import Any
from urllib.parse import unquote

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
XML_NS = "http://www.w3.org/XML/1998/namespace"

SVG_ELEMENTS = frozenset(
    """svg g defs desc title metadata symbol use switch view a
    path rect circle ellipse line polyline polygon
    text tspan textPath
    linearGradient radialGradient stop pattern clipPath mask marker image style
    filter feBlend feColorMatrix feComponentTransfer feComposite feConvolveMatrix
    feDiffuseLighting feDisplacementMap feDistantLight feDropShadow feFlood feFuncA feFuncB
    feFuncG feFuncR feGaussianBlur feImage feMerge feMergeNode feMorphology feOffset
    fePointLight feSpecularLighting feSpotLight feTile feTurbulence""".split()
)
"""The elements kept (everything else, e.g. ``animate``, ``set``, ``script``,
``foreignObject``, ``iframe``, is dropped with its content)."""

LINK_ATTRIBUTES = frozenset({"href", "src"})
RASTER_DATA = re.compile(r"data:image/(png|jpeg|jpg|gif|webp)[;,]", re.IGNORECASE)
SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):", re.IGNORECASE)
CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|$)", re.DOTALL)  # an unclosed comment runs to the end
CSS_URL_NOT_FRAGMENT = re.compile(r"url\((?!['\"]?#)")  # url( open, quoted or not, to no #…
# a string that starts as an address: 'https:…', "data:…", "/…" (after squeeze and lower)
CSS_STRING_ADDRESS = re.compile(r"['\"](?:/|[a-z][a-z0-9+.\-]*:)|\(/")
CSS_FORBIDDEN = (
    # what fetches without url(): a string is an address to these
    "@import",
    "@font-face",
    "image-set(",  # also -webkit-image-set(
    "image(",
    "cross-fade(",
    "src(",
    "element(",  # also -moz-element(
    "attr(",  # attr(x url) would read an address from an attribute
    # what runs (old browsers) or hides a name from this check
    "expression",
    "javascript:",
    "vbscript:",
    "behavior",
    "binding",
    "\\",  # escapes: u\72l( is url(
    "//",  # an address (https://host) anywhere, whatever holds it
)
MAX_SVG_BYTES = 20 * 1024 * 1024


def squeeze(value: str) -> str:
    """``value`` without any whitespace or control character, as a browser reads a URL
    (tabs and newlines inside a scheme are dropped: ``java\\tscript:`` runs)."""
    return "".join(
        ch
        for ch in value
        if not ch.isspace() and unicodedata.category(ch) not in ("Cc", "Cf", "Zs", "Zl", "Zp")
    )


def safe_link(value: str) -> bool:
    """Whether ``value`` is a link an ``<a>`` may keep: http(s), a ``#fragment``, or a
    relative path that does not climb out of its folder."""
    target = squeeze(value)
    if not target or "\\" in target:
        return False
    if target.startswith("#"):
        return True
    scheme = SCHEME.match(target)
    if scheme:
        return scheme.group(1).lower() in ("http", "https") and target[len(scheme[0]) :][:2] == "//"
    if target.startswith("/"):  # site root, or //host: another site
        return False
    return _path_stays_inside(target.split("#", 1)[0].split("?", 1)[0])


def _path_stays_inside(path: str) -> bool:
    """Whether a relative link's path stays in its folder, as a browser or a server may
    read it: ``%2e%2e`` is ``..`` to a browser, a server decodes ``%252e`` once more, reads
    ``\\`` as ``/`` and ``..;x`` as ``..`` (path parameters)."""
    for _ in range(10):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    if unquote(path) != path:  # still encoded after ten rounds: no real link is
        return False
    path = squeeze(path)
    if "\\" in path or path.startswith("/"):
        return False
    segments = [segment.split(";", 1)[0] for segment in path.split("/")]
    return not posixpath.normpath("/".join(segments) or ".").startswith("..")


def safe_resource(tag: str, value: str) -> bool:
    """Whether ``<use>``, ``<image>`` or ``<feImage>`` may load ``value``: a fragment of this
    document, or (images) an embedded raster image. Never a file or another address."""
    target = squeeze(value)
    if target.startswith("#"):
        return True
    return tag in ("image", "feImage") and RASTER_DATA.match(target) is not None


def safe_css(text: str) -> bool:
    """Whether CSS text (a style attribute, a ``<style>`` element or a presentation
    attribute's value) fetches nothing and runs nothing.

    An allow-list for addresses: ``url(`` only to a ``#fragment`` of this document (an
    unclosed ``url(https://…`` fetches too: CSS closes it at the end), no string that starts
    with a scheme or a ``/``, and none of the functions and at-rules that fetch a plain
    string (``image-set("…")``, ``@import "…"``). Checked twice, with the comments kept and
    taken out (``ur/**/l(`` is no url( to CSS, but a check that kept comments would also miss
    a ``/*`` inside a string), after removing whitespace and case, so that every spelling
    CSS reads as one of these is refused, and some it does not (a style is then dropped)."""
    if "\\" in text:
        return False
    with_comments = squeeze(text).lower().replace("*//*", "*/ /*")  # "/**/ /**/": no address
    without_comments = squeeze(CSS_COMMENT.sub("", text)).lower()
    for squeezed in (with_comments, without_comments):
        if any(bad in squeezed for bad in CSS_FORBIDDEN):
            return False
        if CSS_URL_NOT_FRAGMENT.search(squeezed) or CSS_STRING_ADDRESS.search(squeezed):
            return False
    return True


def _local(name: str) -> tuple[str, str]:
    """(namespace, local name) of an lxml tag or attribute name."""
    if name.startswith("{"):
        ns, _, local = name[1:].partition("}")
        return ns, local
    return "", name


def _keep_attribute(tag: str, name: str, value: str) -> bool:
    ns, local = _local(name)
    if local.lower().startswith("on") or ns not in ("", XLINK_NS, XML_NS):
        return False
    if ns == XML_NS and local not in ("space", "lang"):  # xml:base would re-aim every link
        return False
    if local.lower() in LINK_ATTRIBUTES:
        return tag == "a" or safe_resource(tag, value)  # an <a>'s link is judged whole
    if local == "style":
        return safe_css(value)
    if "data:" in squeeze(value).lower():
        return False
    # any attribute may be read as CSS (fill, stroke, filter, mask, cursor, marker-*, …)
    return safe_css(value)


def _unwrap(el: Any) -> None:
    """Replace ``el`` by its children (and keep its text)."""
    parent = el.getparent()
    index = parent.index(el)
    text = el.text or ""
    if text:
        if index == 0:
            parent.text = (parent.text or "") + text
        else:
            prev = parent[index - 1]
            prev.tail = (prev.tail or "") + text
    children = list(el)
    tail = el.tail
    parent.remove(el)
    for offset, child in enumerate(children):
        parent.insert(index + offset, child)
    if tail:
        if children:
            children[-1].tail = (children[-1].tail or "") + tail
        elif index == 0:
            parent.text = (parent.text or "") + tail
        else:
            prev = parent[index - 1]
            prev.tail = (prev.tail or "") + tail


def _drop(el: Any) -> None:
    """Remove ``el`` and its content, keeping the text that follows it."""
    parent = el.getparent()
    if el.tail:
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


def _clean_element(el: Any) -> None:
    for child in list(el):
        ns, tag = _local(child.tag) if isinstance(child.tag, str) else ("", "")
        if ns != SVG_NS or tag not in SVG_ELEMENTS:
            _drop(child)
            continue
        if tag == "style" and not safe_css("".join(child.itertext())):
            _drop(child)
            continue
        _clean_element(child)
        link = [v for k, v in child.attrib.items() if _local(k)[1].lower() in LINK_ATTRIBUTES]
        for name, value in list(child.attrib.items()):
            if not _keep_attribute(tag, name, value):
                del child.attrib[name]
        if tag == "a" and not all(safe_link(v) for v in link):
            _unwrap(child)


def clean_svg(data: bytes) -> bytes | None:
    """The SVG with only what a drawing needs (see the module docstring); None when the
    file is not a well-formed SVG document, has a DOCTYPE or is larger than 20 MiB
    (:func:`svg_refusal` says which)."""
    return _clean(data)[0]


def svg_refusal(data: bytes) -> str | None:
    """Why :func:`clean_svg` refuses ``data`` (a phrase for a warning), or None."""
    return _clean(data)[1]


def _clean(data: bytes) -> tuple[bytes | None, str | None]:
    from lxml import etree

    if len(data) > MAX_SVG_BYTES:
        return None, f"it is larger than {MAX_SVG_BYTES // 1024 // 1024} MiB"
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        strip_cdata=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        return None, f"it is not well-formed XML ({str(exc)[:200]})"
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        # entity declarations: nothing a drawing needs, much an attacker wants
        return None, "it has a <!DOCTYPE …> line (delete that line and save it again)"
    if root.tag != f"{{{SVG_NS}}}svg":
        return None, f'its root is not <svg xmlns="{SVG_NS}">'
    holder = etree.Element("holder")  # so the root is cleaned like any other element
    holder.append(root)
    _clean_element(holder)
    root = holder[0]
    holder.remove(root)
    etree.cleanup_namespaces(root)
    return etree.tostring(root, encoding="utf-8", xml_declaration=True), None
