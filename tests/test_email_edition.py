"""The email edition: HTML and text rendered from the document tree, headers built by the
email API, the per-recipient template, DKIM. Messages are parsed back with real parsers."""

from __future__ import annotations

import email
import json
import re
from email import policy
from email.message import EmailMessage
from pathlib import Path

import lxml.html
import pytest

from conftest import make_publication
from masthead.build import build
from masthead.content import load_issue, load_publication
from masthead.content.markdown import paragraphs
from masthead.render.email.message import (
    Recipient,
    build_template,
    clean_display_name,
    dot_stuff,
    to_header,
)
from sendkit import EXPECTED_HEADERS


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def body(message: EmailMessage, kind: str) -> str:
    """A part's decoded text with "\n" line ends (the wire has CRLF)."""
    part = message.get_body((kind,))
    assert part is not None
    return part.get_content().replace("\r\n", "\n")


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ")).strip()


@pytest.fixture(scope="module")
def preview(built_demo: Path) -> EmailMessage:
    return parse((built_demo / "_site" / "2020-03" / "email.eml").read_bytes())


def recipient(**kw: str) -> Recipient:
    values = {
        "email": "reader@example.net",
        "name": "Ada Reader",
        "unsubscribe_url": "https://bulletin.example.org/unsubscribe/7/AbC-dEf_123",
        "unsubscribe_mailto": "mailto:bulletin@example.org?subject=unsubscribe%207%20AbC",
        "message_id": "<2020-03.7.abc@example.org>",
    }
    values.update(kw)
    return Recipient(**values)


def test_build_writes_the_preview_and_lists_it_in_the_manifest(built_demo: Path) -> None:
    manifest = json.loads((built_demo / "_site" / "manifest.json").read_text("utf-8"))
    entry = next(e for e in manifest["issues"] if e["slug"] == "2020-03")
    assert entry["email"] == "2020-03/email.eml"
    assert (built_demo / "_site" / entry["email"]).is_file()


def test_preview_headers_are_the_expected_set(preview: EmailMessage) -> None:
    assert list(preview.keys()) == EXPECTED_HEADERS
    assert preview["From"] == "Riverside Bulletin <bulletin@example.org>"
    assert preview["Reply-To"] == "editor@example.org"
    assert preview["To"] == "Reader <reader@example.invalid>"
    assert preview["Subject"] == "Riverside Bulletin: Volume 3 Number 45 · March 2020"
    assert preview["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    http, mailto = [u.strip(" <>") for u in preview["List-Unsubscribe"].split(",")]
    assert http.startswith("https://bulletin.example.org/unsubscribe")
    assert mailto.startswith("mailto:bulletin@example.org")
    assert preview.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in preview.iter_parts()] == ["text/plain", "text/html"]


def test_html_holds_every_paragraph_and_no_script(built_demo: Path, preview: EmailMessage) -> None:
    html = body(preview, "html")
    tree = lxml.html.fromstring(html)
    text = re.sub(r"\s+", "", tree.text_content())  # compared without white space
    pub = load_publication(built_demo)
    issue = load_issue(pub, "2020-03")
    for item in issue.items:
        assert re.sub(r"\s+", "", item.title) in text
        for para in paragraphs(item.body):
            assert re.sub(r"\s+", "", para) in text, para[:60]
    assert not tree.xpath("//script | //iframe | //object | //form")
    assert not [a for el in tree.iter() for a in el.attrib if a.lower().startswith("on")]
    # table layout, CSS inlined (the <style> left holds only media queries)
    assert tree.xpath("//table[@role='presentation']")
    assert 'style="' in html
    for style in tree.xpath("//style/text()"):
        assert style.strip().startswith("@media")
    # images: absolute URL, alt text
    images = tree.xpath("//img")
    assert images and all(img.get("alt") for img in images)
    assert images[0].get("src") == "https://bulletin.example.org/2020-03/river.svg"
    # links: view in browser, PDF, unsubscribe
    hrefs = tree.xpath("//a/@href")
    assert "https://bulletin.example.org/2020-03/" in hrefs
    assert "https://bulletin.example.org/2020-03/riverside-bulletin-2020-03.pdf" in hrefs
    assert "https://bulletin.example.org/unsubscribe?preview=1" in hrefs
    # the preheader comes first in the body, hidden
    pre = tree.xpath("//div[@class='preheader']")[0]
    assert "display:none" in pre.get("style")
    assert pre.text_content().startswith("The town's draft flood plan")
    assert tree.xpath("//meta[@name='color-scheme']/@content") == ["light dark"]


def test_text_part_reads_on_its_own(preview: EmailMessage) -> None:
    text = body(preview, "plain")
    assert text.startswith("RIVERSIDE BULLETIN\n")
    assert "View in your browser: https://bulletin.example.org/2020-03/" in text
    assert (
        "Print edition (PDF): https://bulletin.example.org/2020-03/riverside-bulletin-2020-03.pdf"
        in text
    )
    assert "A NEW FLOOD PLAN FOR THE LOWER VALLEY\n=====" in text
    assert "By Mara Lindqvist · The Valley Post · February 20, 2020" in text
    assert "How we measured\n---------------\n" in text  # a body heading, underlined
    assert "\n1. Note the time" in text  # an ordered list
    assert "\n> The engineers are no longer asking" in text  # a quote
    # a link whose text is its address prints the address once
    assert "https://example.org/flood-plan" in text
    assert (
        "Link to the source for full article: "
        "https://townnews.example.com/library-reading-room" in text
    )
    assert "Unsubscribe: https://bulletin.example.org/unsubscribe?preview=1" in text
    assert "<p>" not in text and "&amp;" not in text
    assert max(len(line) for line in text.splitlines()) < 100


def test_content_that_looks_like_html_is_escaped(tmp_path: Path) -> None:
    root = make_publication(
        tmp_path / "pub",
        items={
            "a.md": "---\ntitle: '<b>Bold</b> & co'\n---\n\n<script>alert(1)</script> "
            "[click](javascript:alert(2)) and [a page](other/page.html).\n",
        },
    )
    pub = load_publication(root)
    template = build_template(pub, load_issue(pub, "2020-03"), sender=_sender())
    message = parse(template.personalise(recipient()))
    html = body(message, "html")
    tree = lxml.html.fromstring(html)
    assert not tree.xpath("//script | //b")
    assert "<script>alert(1)</script>" in tree.text_content()
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; co" in html
    hrefs = tree.xpath("//a/@href")
    assert not [h for h in hrefs if "javascript" in h]
    assert "https://example.org/2020-03/other/page.html" in hrefs  # relative: made absolute
    text = body(message, "plain")
    assert "a page <https://example.org/2020-03/other/page.html>" in squash(text)


def _sender():  # type: ignore[no-untyped-def]
    from email.headerregistry import Address

    return Address(display_name="Test Bulletin", addr_spec="news@example.org")


@pytest.mark.parametrize(
    "url",
    [
        "https://bulletin.example.org/unsubscribe/7/AbC-dEf_123",
        # '=' and '&' (QP and HTML escapes), and long enough to be wrapped at a "."
        "https://b.example.org/u?" + "x" * 60 + "&t=" + "y" * 59 + ".z" + "w" * 70,
    ],
)
def test_personalised_bytes_are_valid_mime(built_demo: Path, url: str) -> None:
    pub = load_publication(built_demo)
    issue = load_issue(pub, "2020-03")
    template = build_template(pub, issue, pdf_path="2020-03/x.pdf")
    raw = template.personalise(recipient(unsubscribe_url=url))
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    message = parse(raw)
    for part in message.iter_parts():
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        encoded = part.get_payload(decode=False)
        assert max(len(line) for line in encoded.splitlines()) <= 76
    html = body(message, "html")
    assert url in lxml.html.fromstring(html).xpath("//a/@href")
    text = body(message, "plain")
    assert f"Unsubscribe: {url}\n" in text
    assert message["List-Unsubscribe"].startswith(f"<{url}>, <mailto:")
    assert message["Message-ID"] == "<2020-03.7.abc@example.org>"
    # the wire form is the same message, dot-stuffed
    assert template.wire(recipient(unsubscribe_url=url)) == dot_stuff(raw)


def test_wire_form_stuffs_dots(tmp_path: Path) -> None:
    root = make_publication(
        tmp_path / "pub",
        items={"a.md": "---\ntitle: Dots\n---\n\n```\n.\n.. two\n.hidden\n```\n"},
    )
    pub = load_publication(root)
    template = build_template(pub, load_issue(pub, "2020-03"), sender=_sender())
    wire = template.wire(recipient())
    assert wire.endswith(b"\r\n.\r\n")
    assert not re.search(rb"\r\n\.[^.\r]", wire[:-3])  # every line starting with "." doubled
    unstuffed = wire[:-3].replace(b"\r\n..", b"\r\n.")
    text = body(parse(unstuffed), "plain")
    assert "    .\n    .. two\n    .hidden\n" in text


INJECTIONS = [
    "Eve\r\nBcc: victim@example.org",
    "Eve =?UTF-8?Q?=0A?=Bcc: victim@example.org",
    "=?UTF-8?Q?Eve=0D=0ABcc:_victim@example.org?=",
    "=?UTF-8?B?RXZlDQpCY2M6IHZpY3RpbUBleGFtcGxlLm9yZw==?=",
    "=?UTF-8?Q?=3D=3FUTF-8=3FQ=3F=0A=3F=3D?=Bcc: victim@example.org",  # encoded twice
    "Eve\u2028Bcc: victim@example.org",
    "Eve\u2029\u0085Bcc: victim@example.org",
    'Eve "the quote\\" <evil@example.org>, Bcc: victim@example.org',
    "Zoë\nBcc: victim@example.org",
]


@pytest.mark.parametrize("name", INJECTIONS)
def test_names_cannot_inject_headers(built_demo: Path, name: str) -> None:
    pub = load_publication(built_demo)
    template = build_template(pub, load_issue(pub, "2020-03"))
    message = parse(template.personalise(recipient(name=name)))
    assert list(message.keys()) == EXPECTED_HEADERS
    assert "Bcc" not in message
    (address,) = message["To"].addresses
    assert address.addr_spec == "reader@example.net"
    assert "\n" not in address.display_name and "\r" not in address.display_name
    assert "\u2028" not in address.display_name


def test_clean_display_name_keeps_ordinary_names() -> None:
    assert clean_display_name("Zoë Lindqvist") == "Zoë Lindqvist"
    assert clean_display_name("O'Brien, Pat") == "O'Brien, Pat"
    assert clean_display_name("مریم\u200cنژاد") == "مریم\u200cنژاد"  # ZWNJ is kept
    assert clean_display_name("a\r\nb\u2028c") == "a b c"
    line = to_header("Zoë Lindqvist", "z@example.org")
    assert parse(line + b"\r\n")["To"].addresses[0].display_name == "Zoë Lindqvist"


def test_subject_from_issue_title_cannot_inject(tmp_path: Path) -> None:
    root = make_publication(tmp_path / "pub")
    toml = root / "issues" / "2020-03" / "issue.toml"
    toml.write_text(
        toml.read_text() + 'title = "Water =?UTF-8?Q?=0A?=Bcc: x@example.org\\u2028X"\n'
    )
    pub = load_publication(root)
    template = build_template(pub, load_issue(pub, "2020-03"), sender=_sender())
    message = parse(template.personalise(recipient()))
    assert "Bcc" not in message
    assert list(message.keys()) == [h for h in EXPECTED_HEADERS if h != "Reply-To"]
    assert "\n" not in message["Subject"]


def test_dkim_signature_verifies_and_covers_list_unsubscribe(tmp_path: Path) -> None:
    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    root = make_publication(tmp_path / "pub")
    (root / "dkim.pem").write_bytes(pem)
    with (root / "masthead.toml").open("a") as f:
        f.write(
            '[email]\nfrom = "Test <news@example.org>"\ndkim_selector = "mh"\n'
            'dkim_domain = "example.org"\ndkim_key_file = "dkim.pem"\n'
        )
    pub = load_publication(root)
    template = build_template(pub, load_issue(pub, "2020-03"))
    raw = template.personalise(recipient())
    message = parse(raw)
    signature = message["DKIM-Signature"]
    signed = re.search(r"h=([^;]+)", re.sub(r"\s+", "", signature)).group(1).lower().split(":")  # type: ignore[union-attr]
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "to", "subject"} <= set(signed)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mh._domainkey.example.org."
        return record

    assert dkim.verify(raw, dnsfunc=dns)
    tampered = raw.replace(b"List-Unsubscribe: <https", b"List-Unsubscribe: <http")
    assert not dkim.verify(tampered, dnsfunc=dns)
    # the wire form is the same message, signed: it verifies, and apart from the signature
    # (whose t= timestamp may tick between the two signings) it is byte for byte the same
    wire = template.wire(recipient())[:-3].replace(b"\r\n..", b"\r\n.")
    assert dkim.verify(wire, dnsfunc=dns)

    def unsigned(message: bytes) -> bytes:
        return re.sub(rb"\ADKIM-Signature:.*?\r\n(?! )", b"", message, flags=re.S)

    assert unsigned(wire) == unsigned(raw) != raw


def test_build_of_a_publication_without_email_config_still_previews(tmp_path: Path) -> None:
    root = make_publication(tmp_path / "pub")
    build(root)
    message = parse((root / "_site" / "2020-03" / "email.eml").read_bytes())
    assert message["From"] == "Test Bulletin <newsletter@example.org>"
