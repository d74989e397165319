"""The print edition, read back from the PDF: contents, pages, every paragraph, hostile text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pypdf
import pytest

from conftest import make_publication, normalise, pdf_page_texts
from masthead.build import build
from masthead.content import load_issue, load_publication, paragraphs


def _manifest(root: Path) -> dict:
    return json.loads((root / "_site" / "manifest.json").read_text("utf-8"))


def _pdf(root: Path, manifest: dict, n: int = 0) -> Path:
    return root / "_site" / manifest["issues"][n]["pdf"]


def _span(first: int, last: int) -> str:
    if first == last:
        return str(first)
    return f"{first}, {last}" if last == first + 1 else f"{first}–{last}"


def test_contents_box_shows_the_pages_the_layout_gives(built_demo: Path) -> None:
    manifest = _manifest(built_demo)
    pages = pdf_page_texts(_pdf(built_demo, manifest))
    front = normalise(pages[0])
    contents = front[front.index("INSIDE THIS ISSUE") :]
    for item in manifest["issues"][0]["items"]:
        first, last = item["pages"]
        assert re.search(
            re.escape(item["title"]) + r"[ .]*" + re.escape(_span(first, last)) + r"\b", contents
        ), f"contents line for {item['title']!r} should end with {_span(first, last)}"


def test_items_start_and_end_on_the_pages_the_contents_box_gives(built_demo: Path) -> None:
    manifest = _manifest(built_demo)
    pages = [normalise(t) for t in pdf_page_texts(_pdf(built_demo, manifest))]
    pub = load_publication(built_demo)
    issue = load_issue(pub, manifest["issues"][0]["slug"])
    spans = {i["slug"]: i["pages"] for i in manifest["issues"][0]["items"]}
    for item in issue.items:
        first, last = spans[item.slug]
        title = normalise(item.title)
        # the title appears on its first page (the contents box on page 1 also lists it)
        body_of_first = pages[first - 1]
        if first == 1:
            body_of_first = body_of_first[body_of_first.index("INSIDE THIS ISSUE") + 300 :]
        assert title in body_of_first, f"{item.slug}: title not on page {first}"
        tail = " ".join(normalise(paragraphs(item.body)[-1]).split()[-6:])
        assert tail in pages[last - 1], f"{item.slug}: last words {tail!r} not on page {last}"
        if last > first:
            assert tail not in pages[first - 1]


def _flowing_text(root: Path, manifest: dict) -> str:
    """The text of every page without page furniture (running head, page number, the
    publisher box), so a paragraph split across columns or pages reads as one."""
    pub = load_publication(root).config
    furniture = [
        rf"{re.escape(pub.name)} · Volume \d+ Number \d+ · \w+ \d{{4}}( [^\n]*\(continued\))?",
        re.escape(pub.publisher.name)
        + r"\s+"
        + re.escape(pub.publisher.about[:20])
        + r".*?"
        + re.escape(pub.publisher.website or ""),
    ]
    pages = []
    for text in pdf_page_texts(_pdf(root, manifest)):
        text = text.replace("\r\n", "\n")
        text = re.sub(r"\n\d+\s*$", "", text.rstrip())  # the footer's page number
        for pattern in furniture:
            text = re.sub(pattern, " ", text, flags=re.S)
        pages.append(text)
    return normalise("\n".join(pages))


def test_every_paragraph_of_every_item_is_printed(built_demo: Path) -> None:
    manifest = _manifest(built_demo)
    text = _flowing_text(built_demo, manifest)
    issue = load_issue(load_publication(built_demo), manifest["issues"][0]["slug"])

    # A hyphen at a line's end is indistinguishable from hyphenation in extracted text, and
    # Persian words in an English sentence are checked on their own (test_bilingual.py).
    def latin(s: str) -> str:
        s = re.sub(r"[\u0600-\u06ff«»()\u200c]+", "", normalise(s).replace("-", ""))
        return re.sub(r"\s+", " ", s)

    text = latin(text)
    missing = [
        (item.slug, para[:60])
        for item in issue.items
        for para in paragraphs(item.body)
        if latin(para) not in text
    ]
    assert not missing


def test_each_kind_is_laid_out_as_a_periodical_does(built_demo: Path) -> None:
    manifest = _manifest(built_demo)
    text = normalise(" ".join(pdf_page_texts(_pdf(built_demo, manifest))))
    # masthead
    assert "Riverside Bulletin" in text and "Volume 3 Number 45" in text and "March 2020" in text
    # reprint: attribution line and source link
    assert (
        "By Dr. Amina Farouk, Peter Novak · Lower Valley Naturalists' Journal · January 15, 2020"
        in text
    )
    assert "Source: https://naturalists.example.net/journal/2019/river-state" in text
    # excerpt ends with the link to the full article
    assert re.search(
        r"Link to the source for full article: "
        r"https://townnews\.example\.com/ ?library-reading-room",
        text,
    )
    # letter: date, addressee block, salutation, signature
    letter = text[text.index("Letter to the Town Council") + 60 :]
    for part in [
        "February 25, 2020",
        "Ms. Jane Doe",
        "Chair, Riverside Town Council",
        "Dear Ms. Doe,",
        "Sincerely, Tom Okafor",
    ]:
        assert part in letter
    # publisher box
    for part in [
        "P.O. Box 14145/119",
        "info@example.org",
        "editor@example.org",
        "https://example.org",
    ]:
        assert part in text


def test_continued_articles_carry_a_running_head(built_demo: Path) -> None:
    manifest = _manifest(built_demo)
    pages = [normalise(t) for t in pdf_page_texts(_pdf(built_demo, manifest))]
    report = next(i for i in manifest["issues"][0]["items"] if i["slug"] == "river-report")
    first, last = report["pages"]
    assert last - first >= 2, "the demo's long reprint runs over several pages"
    for page in range(first + 1, last + 1):
        assert f"{report['title']} (continued)" in pages[page - 1]
    assert "(continued)" not in pages[0]
    for n, text in enumerate(pages, start=1):
        assert re.search(rf"(^|\s){n}$", text), f"page number {n} in the footer"


def test_pdf_is_tagged_with_metadata_and_language(built_demo: Path) -> None:
    manifest = _manifest(built_demo)
    reader = pypdf.PdfReader(_pdf(built_demo, manifest))
    root = reader.trailer["/Root"]
    assert root["/Lang"] == "en"
    assert bool(root["/MarkInfo"]["/Marked"])
    assert "/StructTreeRoot" in root
    assert reader.metadata.title == "Riverside Bulletin — Volume 3 Number 45, March 2020"
    assert "Riverside Community Association" in reader.metadata.author
    assert manifest["issues"][0]["pdf_standards"] == ["ua-1", "a-2b"]
    # links are clickable
    annots = [a.get_object() for p in reader.pages for a in p.get("/Annots", [])]
    uris = {a["/A"].get("/URI") for a in annots if "/A" in a}
    assert "https://example.org/flood-plan" in uris


@pytest.mark.parametrize(("paper", "size"), [("a4", (595, 842)), ("us-letter", (612, 792))])
def test_a4_and_letter(tmp_path: Path, paper: str, size: tuple[int, int]) -> None:
    root = make_publication(tmp_path, paper=paper)
    build(root)
    reader = pypdf.PdfReader(_pdf(root, _manifest(root)))
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == size


HOSTILE = [
    '#read("/etc/passwd")',
    '#import "/masthead.toml": *',
    "] [ } {",
    "$x^2$ costs $5",
    "<script>alert(1)</script>",
    "@label <label>",
    "a \\ backslash \\\\ two",
    "*not-bold* _under_",
    "// not a comment",
]


def _md_escape(text: str) -> str:
    """Markdown for exactly this text: every ASCII punctuation mark backslash-escaped."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", text)


def test_text_that_looks_like_typst_or_html_prints_literally(tmp_path: Path) -> None:
    body = "\n\n".join(f"Para {i}: `{h}` and {_md_escape(h)}" for i, h in enumerate(HOSTILE))
    items = {
        "a.md": "---\ntitle: '#read(\"/etc/passwd\") ] $ <b>@x</b>'\nauthors: ['#sys.inputs']\n"
        "source: '] #panic()'\nkind: reprint\nsource_url: https://example.org/a\n---\n\n"
        + body
        + "\n",
    }
    root = make_publication(tmp_path, items=items)
    build(root)
    text = normalise(" ".join(pdf_page_texts(_pdf(root, _manifest(root)))))
    assert '#read("/etc/passwd") ] $ <b>@x</b>' in text
    assert "By #sys.inputs · ] #panic()" in text
    squeezed = re.sub(r"\s+", "", text)  # lines may wrap inside a path, after "/"
    for i, h in enumerate(HOSTILE):
        assert re.sub(r"\s+", "", f"Para {i}: {h} and {h}") in squeezed
    assert "root:x:0" not in text


def test_items_follow_the_order_in_issue_toml(tmp_path: Path) -> None:
    items = {
        "a.md": "---\ntitle: Alpha item\n---\n\nFirst written.\n",
        "b.md": "---\ntitle: Bravo item\nkind: brief\n---\n\nSecond written.\n",
    }
    root = make_publication(tmp_path, items=items)
    toml = root / "issues" / "2020-03" / "issue.toml"
    toml.write_text(toml.read_text() + 'items = ["b.md", "a"]\n')
    build(root)
    text = normalise(" ".join(pdf_page_texts(_pdf(root, _manifest(root)))))
    assert text.index("Second written.") < text.index("First written.")
    assert [i["slug"] for i in _manifest(root)["issues"][0]["items"]] == ["b", "a"]
