"""The print edition reads no file outside the item's issue folder, whatever an author's SVG
asks for (Typst's root is the publication folder; an SVG could name any file in it)."""

from __future__ import annotations

from pathlib import Path

import pypdfium2
import pypdfium2.raw as pdfium_c
import pytest

from conftest import make_publication
from editor_kit import png
from masthead.build import build

ITEM = (
    "---\ntitle: Drawing\nimage: drawing.svg\nimage_alt: A drawing\n---\n\n![inline](inline.svg)\n"
)
SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
    'width="200" height="100"><rect width="50" height="50" fill="#123456"/>{}</svg>'
)


PRIVATE_SIZE = (13, 7)
"""The private images' odd size in pixels, to tell them from anything else in the PDF (a
filter is drawn as an image of its own)."""


def _image_sizes(pdf_path: Path) -> list[tuple[int, int]]:
    """The pixel size of each image the PDF's pages draw (inside forms too)."""
    pdf = pypdfium2.PdfDocument(pdf_path)
    try:
        return [
            tuple(obj.get_px_size())
            for page in pdf
            for obj in page.get_objects(max_depth=20)
            if obj.type == pdfium_c.FPDF_PAGEOBJ_IMAGE
        ]
    finally:
        pdf.close()


@pytest.mark.parametrize(
    "reference",
    [
        '<image href="../../private.png" width="100" height="100"/>',
        '<image xlink:href="../../private.png" width="100" height="100"/>',
        '<image href="/private.png" width="100" height="100"/>',
        '<image href="../2020-04/other.png" width="100" height="100"/>',
        '<filter id="f"><feImage href="../../private.png"/></filter>'
        '<rect width="10" height="10" filter="url(#f)"/>',
    ],
)
def test_svg_cannot_embed_a_file_outside_its_issue(tmp_path: Path, reference: str) -> None:
    root = make_publication(tmp_path / "pub", items={"a.md": ITEM})
    (root / "private.png").write_bytes(png(*PRIVATE_SIZE))
    (root / "issues" / "2020-04").mkdir()
    (root / "issues" / "2020-04" / "other.png").write_bytes(png(*PRIVATE_SIZE))
    folder = root / "issues" / "2020-03"
    (folder / "drawing.svg").write_text(SVG.format(reference), "utf-8")
    (folder / "inline.svg").write_text(SVG.format(reference), "utf-8")
    build(root)
    pdfs = list((root / "_site").rglob("*.pdf"))
    assert pdfs
    for pdf in pdfs:
        assert PRIVATE_SIZE not in _image_sizes(pdf), pdf


def test_an_image_beside_the_item_still_prints(tmp_path: Path) -> None:
    """The control: a raster image of the issue's own folder is embedded."""
    item = "---\ntitle: Photo\nimage: photo.png\nimage_alt: A photo\n---\n\nText.\n"
    root = make_publication(tmp_path / "pub", items={"a.md": item})
    (root / "issues" / "2020-03" / "photo.png").write_bytes(png(*PRIVATE_SIZE))
    build(root)
    pdfs = list((root / "_site").rglob("*.pdf"))
    assert pdfs and all(PRIVATE_SIZE in _image_sizes(pdf) for pdf in pdfs)


@pytest.mark.parametrize(
    ("svg", "reason"),
    [
        (
            '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
            '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">' + SVG.format(""),
            "<!DOCTYPE",
        ),
        (SVG.format("<rect>"), "not well-formed XML"),
        ('<svg width="1" height="1"/>', "root is not"),
    ],
)
def test_a_refused_svg_is_named_in_a_warning(tmp_path: Path, svg: str, reason: str) -> None:
    root = make_publication(tmp_path / "pub", items={"a.md": ITEM})
    folder = root / "issues" / "2020-03"
    (folder / "drawing.svg").write_text(svg, "utf-8")
    (folder / "inline.svg").write_text(SVG.format(""), "utf-8")
    report = build(root)
    found = [w for w in report.warnings if "drawing.svg" in w]
    assert len(found) == 1 and reason in found[0] and "a.md" in found[0], report.warnings
    assert not (root / "_site" / "2020-03" / "drawing.svg").exists()
    assert (root / "_site" / "2020-03" / "inline.svg").exists()
