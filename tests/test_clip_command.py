"""`masthead clip` end to end: a real HTTP server on 127.0.0.1 serves the pages, the item is
written, loaded by Masthead and printed (the PDF is read back)."""

from __future__ import annotations

import json
import struct
import zlib
from datetime import date
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from conftest import make_publication, normalise, pdf_page_texts
from http_pages import PageServer
from masthead.build import build
from masthead.cli import main
from masthead.content import load_item, paragraphs
from masthead.content.clip import clip, decode_html, newest_issue
from masthead.content.html_markdown import html_to_markdown
from masthead.content.loader import load_publication
from masthead.content.markdown import parse_markdown, walk_blocks

LOREM = (
    "The river rose by two metres overnight, and the council opened the flood gates before "
    "dawn. Residents of the lower streets were asked to move their cars to higher ground. "
    "By noon the water had begun to fall again, and the emergency services said that no "
    "house had been flooded. The new warning system sent messages to four hundred people. "
)

ARTICLE = f"""<!doctype html><html lang="en"><head>
<meta charset="utf-8"><title>River rises overnight | The Valley Post</title>
<meta property="og:title" content="River rises overnight">
<meta property="og:site_name" content="The Valley Post">
<meta name="author" content="Mara Lindqvist">
<meta property="article:published_time" content="2020-02-20T08:00:00Z">
<link rel="canonical" href="{{base}}/2020/02/river">
<meta property="og:image" content="{{base}}/lead.png">
<meta property="og:image:alt" content="The river at the old mill">
</head><body>
<nav><a href="/">Home</a> <a href="/news">News</a> <a href="/sport">Sport</a></nav>
<article><h1>River rises overnight</h1>
<p>{LOREM}</p>
<h2>What happens next</h2>
<p>{LOREM} Read <a href="/2020/01/plan">the flood plan</a> for the details.</p>
<ul><li>Gauges at three points along the river</li><li>A raised footpath on the east bank</li></ul>
<blockquote><p>We ask where the river can safely go when it leaves its channel.</p></blockquote>
<p>{LOREM}</p>
</article>
<div class="share">Share on Facebook Share on Twitter</div>
<div class="comments"><h3>Comments</h3><p>First! Great article.</p></div>
<script>alert("tracking")</script>
</body></html>"""


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", raw)
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def server():
    with PageServer() as s:
        yield s


@pytest.fixture
def pub(tmp_path: Path) -> Path:
    return make_publication(tmp_path / "pub")


def _front(path: Path) -> dict:
    text = path.read_text("utf-8")
    return yaml.safe_load(text.split("---\n")[1])


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["clip", *args])
    return result.exit_code, result.output


def test_clip_writes_an_item_with_its_attribution_and_lead_image(
    server: PageServer, pub: Path
) -> None:
    server.page("/2020/02/river", ARTICLE.replace("{base}", server.url("").rstrip("/")))
    server.page("/lead.png", _png(), content_type="image/png")
    code, out = _run(server.url("/2020/02/river"), str(pub), "--allow-private")
    assert code == 0, out
    path = pub / "issues" / "2020-03" / "river-rises-overnight.md"
    meta = _front(path)
    assert meta == {
        "title": "River rises overnight",
        "kind": "reprint",
        "authors": ["Mara Lindqvist"],
        "source": "The Valley Post",
        "source_url": server.url("/2020/02/river"),
        "published": date(2020, 2, 20),
        "image": "river-rises-overnight.png",
        "image_alt": "The river at the old mill",
    }
    assert (path.parent / "river-rises-overnight.png").read_bytes() == _png()
    assert "Clipped into issues/2020-03/river-rises-overnight.md" in out
    assert "authors: Mara Lindqvist" in out

    warnings: list[str] = []
    item = load_item(path, warnings)
    assert warnings == []
    text = "\n".join(paragraphs(item.body))
    assert "two metres overnight" in text
    assert "gauges at three points" in text.lower()
    for noise in ("Share on Facebook", "First! Great article", "tracking", "Home"):
        assert noise not in text
    kinds = {b["type"] for b in walk_blocks(item.body)}
    assert {"heading", "paragraph", "list", "quote"} <= kinds
    links = [
        i for b in walk_blocks(item.body) for i in b.get("children", []) if i["type"] == "link"
    ]
    assert links and links[0]["url"] == server.url("/2020/01/plan")
    # the headline is the item's title, not repeated as the first heading
    assert item.body[0]["type"] != "heading"


def test_the_same_address_again_is_warned_about(server: PageServer, pub: Path) -> None:
    server.page("/2020/02/river", ARTICLE.replace("{base}", server.url("").rstrip("/")))
    args = (server.url("/2020/02/river"), str(pub), "--allow-private", "--no-image")
    assert _run(*args)[0] == 0
    code, out = _run(*args)
    assert code == 0
    assert "is already in issues/2020-03/river-rises-overnight.md" in out
    assert (pub / "issues" / "2020-03" / "river-rises-overnight-2.md").is_file()


def test_without_the_flag_a_loopback_address_is_refused(server: PageServer, pub: Path) -> None:
    server.page("/a", ARTICLE)
    code, out = _run(server.url("/a"), str(pub))
    assert code == 1
    assert "not a public internet address" in out and "--allow-private" in out
    assert server.requests == []


def test_no_author_no_date_is_said_and_nothing_invented(server: PageServer, pub: Path) -> None:
    page = (
        "<html><head><title>Seed swap on Saturday</title></head><body><article>"
        "<h1>Seed swap on Saturday</h1>"
        f"<p>{LOREM}</p><p>{LOREM}</p><p>Copyright 2019 The Garden Club.</p>"
        "</article></body></html>"
    )
    server.page("/seeds", page)
    code, out = _run(server.url("/seeds"), str(pub), "--allow-private")
    assert code == 0, out
    path = pub / "issues" / "2020-03" / "seed-swap-on-saturday.md"
    meta = _front(path)
    assert "authors" not in meta and "published" not in meta
    assert "no author found: add `authors:` to issues/2020-03/seed-swap-on-saturday.md" in out
    assert "no publication date found" in out
    assert meta["source_url"] == server.url("/seeds")
    assert meta["source"].startswith("127.0.0.1")  # the host: the page names no outlet


PAYLOAD = """<html><head><title>Hostile text</title>
<meta property="og:image" content="/notimage.png"></head><body><article>
<h1>Hostile text</h1>
<p>Typst code: #read("/etc/passwd") and #import "x.typ": * and $x^2$ and ] and @x and \\ and
 &lt;script&gt;alert(1)&lt;/script&gt; and &lt;img src=x onerror=alert(2)&gt;
 and *stars* and [y](z).</p>
<p>Click <a href="javascript:alert(3)">this harmless link</a> or
<a href="data:text/html,hi">that one</a>, and <a href="https://example.org/ok">a real one</a>.
<img src="x" onerror="alert(4)"> #set page(fill: red) and &amp;copy; stays.</p>
<script>alert(5)</script>
<p>{lorem}</p><p>{lorem}</p>
</article></body></html>""".replace("{lorem}", LOREM)


def test_typst_and_html_payloads_print_as_text(server: PageServer, pub: Path) -> None:
    server.page("/hostile", PAYLOAD)
    server.page("/notimage.png", "<html>not an image</html>", content_type="image/png")
    code, out = _run(server.url("/hostile"), str(pub), "--allow-private")
    assert code == 0, out
    assert "lead image skipped" in out and "not a PNG, JPEG or GIF" in out
    path = pub / "issues" / "2020-03" / "hostile-text.md"
    assert "image" not in _front(path)
    markdown = path.read_text("utf-8")
    assert "javascript" not in markdown and "data:" not in markdown
    assert "alert(4)" not in markdown and "alert(5)" not in markdown

    item = load_item(path, [])
    links = [
        i["url"]
        for b in walk_blocks(item.body)
        for i in b.get("children", [])
        if i["type"] == "link"
    ]
    assert links == ["https://example.org/ok"]
    text = "\n".join(paragraphs(item.body))
    for literal in [
        '#read("/etc/passwd")',
        '#import "x.typ": *',
        "$x^2$",
        "] and @x and \\ and",
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(2)>",
        "*stars* and [y](z).",
        "#set page(fill: red) and &copy; stays.",
    ]:
        assert literal in text

    build(pub)
    manifest = json.loads((pub / "_site" / "manifest.json").read_text("utf-8"))
    pdf = normalise(" ".join(pdf_page_texts(pub / "_site" / manifest["issues"][0]["pdf"])))
    for literal in [
        '#read("/etc/passwd")',
        "$x^2$",
        "@x",
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(2)>",
        "*stars* and [y](z).",
        "#set page(fill: red)",
        "this harmless link",
    ]:
        assert literal in pdf, literal
    assert "root:" not in pdf  # /etc/passwd was not read


def test_an_excerpt_keeps_the_first_words_to_a_sentence_end(server: PageServer, pub: Path) -> None:
    server.page("/2020/02/river", ARTICLE.replace("{base}", server.url("").rstrip("/")))
    code, out = _run(
        server.url("/2020/02/river"), str(pub), "--allow-private", "--kind", "excerpt",
        "--words", "40", "--no-image",
    )  # fmt: skip
    assert code == 0, out
    path = pub / "issues" / "2020-03" / "river-rises-overnight.md"
    assert _front(path)["kind"] == "excerpt"
    text = " ".join(paragraphs(load_item(path, []).body))
    assert text.endswith("move their cars to higher ground.")
    assert len(text.split()) <= 40
    build(pub)
    manifest = json.loads((pub / "_site" / "manifest.json").read_text("utf-8"))
    pdf = normalise(" ".join(pdf_page_texts(pub / "_site" / manifest["issues"][0]["pdf"])))
    assert server.url("/2020/02/river") in pdf.replace(" ", "")


def test_a_saved_file_is_clipped_into_the_issue_named(tmp_path: Path, pub: Path) -> None:
    second = pub / "issues" / "2020-04"
    second.mkdir()
    (second / "issue.toml").write_text("volume = 1\nnumber = 3\ndate = 2020-04-01\n", "utf-8")
    (second / "a.md").write_text("---\ntitle: A\n---\n\nText.\n", "utf-8")
    assert newest_issue(load_publication(pub)) == "2020-04"
    saved = tmp_path / "page.html"
    saved.write_text(ARTICLE.replace("{base}", "https://valleypost.example.com"), "utf-8")
    report = clip(str(saved), pub, issue="2020-03", images=False)
    assert report.path.parent.name == "2020-03"
    meta = _front(report.path)
    assert meta["source_url"] == "https://valleypost.example.com/2020/02/river"


# ----------------------------------------------------------------------------------------
# Pages that lie about their character set


TEXT = "Le café de la gare a rouvert : crème brûlée, œufs, déjà vu — « naïve » façade."


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (TEXT.encode("utf-8"), "iso-8859-1"),  # says latin-1, is UTF-8
        (TEXT.encode("cp1252"), "utf-8"),  # says UTF-8, is windows-1252
        (TEXT.encode("cp1252"), None),  # says nothing
        (TEXT.encode("cp1252"), "windows-1252"),  # tells the truth
    ],
)
def test_decode_html_finds_the_real_charset(data: bytes, declared: str | None) -> None:
    page = b"<html><head><meta charset='" + (declared or "").encode() + b"'></head><body><p>"
    assert TEXT in decode_html(page + data + b"</p></body></html>", declared)


@pytest.mark.parametrize(
    ("encoding", "header"),
    [("utf-8", "text/html; charset=ISO-8859-1"), ("cp1252", "text/html; charset=utf-8")],
)
def test_a_page_with_a_wrong_charset_is_clipped_right(
    server: PageServer, pub: Path, encoding: str, header: str
) -> None:
    body = (
        "<html><head><title>La gare</title></head><body><article><h1>La gare</h1>"
        f"<p>{TEXT} {LOREM}</p><p>{LOREM}</p></article></body></html>"
    )
    server.page("/gare", body.encode(encoding), content_type=header)
    report = clip(server.url("/gare"), pub, allow_private=True, images=False)
    assert TEXT in " ".join(paragraphs(load_item(report.path, []).body))


# ----------------------------------------------------------------------------------------
# HTML → Markdown


def test_markdown_escapes_structure_in_text() -> None:
    html = (
        "<p># not a heading</p><p>1. not a list</p><p>- nor this</p><p>&gt; nor a quote</p>"
        "<p>[a](b) ![i](j) &lt;http://x&gt; `code` *em* _u_ | pipe ~~s~~ &amp;amp;</p>"
    )
    blocks = parse_markdown(html_to_markdown(html))
    assert [b["type"] for b in blocks] == ["paragraph"] * 5
    assert paragraphs(blocks) == [
        "# not a heading",
        "1. not a list",
        "- nor this",
        "> nor a quote",
        "[a](b) ![i](j) <http://x> `code` *em* _u_ | pipe ~~s~~ &amp;",
    ]
    assert all(i["type"] == "text" for i in blocks[4]["children"])


def test_markdown_keeps_structure() -> None:
    html = (
        "<h2>Head</h2><p>Para with <a href='https://e.org/a b'>a link</a>.</p>"
        "<ol><li>one</li><li>two<ul><li>inner</li></ul></li></ol>"
        "<blockquote><p>quoted</p></blockquote><pre>code *not em*</pre>"
        "<table><tr><th>a</th><th>b|c</th></tr><tr><td>1</td><td>2</td></tr></table>"
    )
    blocks = parse_markdown(html_to_markdown(html))
    assert [b["type"] for b in blocks] == ["heading", "paragraph", "list", "quote", "code", "table"]
    assert blocks[1]["children"][1] == {
        "type": "link",
        "url": "https://e.org/a%20b",
        "children": [{"type": "text", "text": "a link"}],
    }
    assert blocks[2]["ordered"] and blocks[2]["items"][1][1]["type"] == "list"
    assert blocks[4]["text"] == "code *not em*"
    assert paragraphs([blocks[5]]) == ["a b|c 1 2"]


def test_an_issue_that_lists_its_items_gets_the_clip_added_last(tmp_path: Path, demo: Path) -> None:
    saved = tmp_path / "page.html"
    saved.write_text(ARTICLE.replace("{base}", "https://valleypost.example.com"), "utf-8")
    code, out = _run(str(saved), str(demo), "--no-image")
    assert code == 0, out
    assert "added last to `items` in issue.toml" in out
    issue_toml = demo / "issues" / "2020-03" / "issue.toml"
    assert (
        issue_toml.read_text("utf-8")
        .splitlines()[-1]
        .endswith('"seed-swap.md", "river-rises-overnight.md"]')
    )
    build(demo)
    manifest = json.loads((demo / "_site" / "manifest.json").read_text("utf-8"))
    assert manifest["issues"][0]["items"][-1]["slug"] == "river-rises-overnight"
    pdf = normalise(" ".join(pdf_page_texts(demo / "_site" / manifest["issues"][0]["pdf"])))
    assert "River rises overnight" in pdf and "two metres overnight" in pdf


def test_front_matter_from_a_hostile_page_stays_data(server: PageServer, pub: Path) -> None:
    title = '---\\ntitle: pwned\\n--- #read("/etc/passwd") [x] {y} \'z\' "w" &'
    page = (
        f"<html><head><title>{title}</title>"
        "<meta name='author' content='Ann: &quot;The&quot; Writer; -- Bob'></head><body><article>"
        f"<p>{LOREM}</p><p>{LOREM}</p></article></body></html>"
    )
    server.page("/h", page)
    report = clip(server.url("/h"), pub, allow_private=True, images=False)
    item = load_item(report.path, [])
    assert item.meta.title == title
    assert len(item.meta.authors) == 2 and item.meta.authors[1] == "-- Bob"


def test_emphasis_is_kept_without_joining_words() -> None:
    """Regression: trafilatura's formatted output drops the space before <i>."""
    from masthead.content.clip import restore_emphasis

    plain = "<p>Chapter from the book entitled Beautiful Code, OReilly.</p>"
    formatted = "<p>Chapter from the book entitled<i>Beautiful Code</i>, OReilly.</p>"
    markdown = html_to_markdown(restore_emphasis(plain, formatted))
    assert markdown == "Chapter from the book entitled *Beautiful Code*, OReilly.\n"
    # when the two runs found different text, the plain one is used
    assert restore_emphasis(plain, "<p>Something <b>else</b></p>") == plain


def test_clip_with_lang_writes_the_translation_of_an_item(tmp_path: Path, demo: Path) -> None:
    saved = tmp_path / "page.html"
    saved.write_text(ARTICLE.replace("{base}", "https://valleypost.example.com"), "utf-8")
    code, out = _run(
        str(saved), str(demo), "--no-image", "--lang", "fa", "--translation-of", "choir-rehearsals"
    )
    assert code == 0, out
    translation = demo / "issues" / "2020-03" / "choir-rehearsals.fa.md"
    assert _front(translation)["source_url"] == "https://valleypost.example.com/2020/02/river"
    assert "added last to `items`" not in out, "a translation follows its item's place"
    build(demo)
    fa = json.loads((demo / "_site" / "manifest.json").read_text("utf-8"))["issues"][0]
    assert "choir-rehearsals" in [i["slug"] for i in fa["editions"]["fa"]["items"]]
    # without a main item beside it, the command says what to add
    code, out = _run(str(saved), str(demo), "--no-image", "--lang", "fa")
    assert code == 0, out
    assert "no river-rises-overnight.md beside it" in out
    code, out = _run(str(saved), str(demo), "--lang", "de")
    assert code == 1 and "no 'de' edition" in out
