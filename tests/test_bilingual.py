"""Bilingual editions: the Persian print edition of the demo, read back from the PDF."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pypdf
import pytest
from click.testing import CliRunner

from conftest import pdf_page_texts
from masthead.build import build
from masthead.cli import main
from masthead.content import load_issue, load_publication, paragraphs
from masthead.i18n import format_long_date, format_month_year, localize_digits

LETTERS = re.compile(r"[\u0621-\u063A\u0641-\u064A\u0671-\u06D3\u06F0-\u06F9]+")


def persian_words(text: str) -> list[str]:
    """The Persian words of ``text``, reduced to what PDF extraction keeps reliably.

    Typst's ToUnicode table maps the heh glyph to the whole "هٔ" cluster once the ezafe has
    used it, and marks to their cluster (typst/typst#4225, #8767), so extracted text loses,
    doubles or moves heh, the hamza and other marks, and the zero-width non-joiner. Those
    go; every other letter of every word is checked."""
    text = text.replace("ه", "").replace("ۀ", "")
    text = re.sub(r"[\u064B-\u065F\u0670\u200c\ufffe\u202a-\u202e]", "", text)
    return LETTERS.findall(text)


def _edition(root: Path) -> dict:
    manifest = json.loads((root / "_site/manifest.json").read_text("utf-8"))
    return manifest["issues"][0]


def _body_text(root: Path, pdf: Path) -> str:
    pub = load_publication(root).config.localized("fa")
    pages = []
    for text in pdf_page_texts(pdf):
        lines = text.replace("\r\n", "\n").strip().split("\n")
        # page furniture: the running head on pages after the first, the page number
        lines = lines[:-1] if re.fullmatch(r"[۰-۹]+", lines[-1].strip()) else lines
        pages.append("\n".join(lines))
    text = "\n".join(pages)
    text = text.replace(pub.publisher.about or "", "")
    return text


def test_persian_edition_is_built_beside_the_english_one(built_demo: Path) -> None:
    issue = _edition(built_demo)
    fa = issue["editions"]["fa"]
    assert fa["pdf"].endswith(".fa.pdf") and (built_demo / "_site" / fa["pdf"]).is_file()
    assert [i["slug"] for i in fa["items"]] == [
        "lead",
        "letter-to-the-council",
        "library-hours",
        "spring-cleanup",
        "seed-swap",
    ], "the items that exist in Persian, in the English order"
    assert fa["items"][0]["title"].startswith("طرح")
    for item in fa["items"]:
        assert 1 <= item["pages"][0] <= item["pages"][1] <= fa["page_count"]
    assert issue["pdf"].endswith("2020-03.pdf"), "the main edition stays where it was"


def words_in_order(words: list[str], text: str, line: int = 120) -> list[str]:
    """The words not found in ``text`` in the order given.

    Each word is searched from where the previous one ended, less one line's length: a
    segment of a line may come out of PDFium in visual order (its bidi heuristics; the
    rendered line is right, as the page images show), and a word split into runs may come out
    with its letters reversed. Beyond that the order must hold and every word be there."""
    missing, at = [], 0
    for word in words:
        start = max(0, at - line)
        found = [i for i in (text.find(word, start), text.find(word[::-1], start)) if i >= 0]
        if not found:
            missing.append(word)
            continue
        at = max(at, min(found) + len(word))
    return missing


def test_persian_pdf_text_is_complete_and_in_logical_order(built_demo: Path) -> None:
    fa = _edition(built_demo)["editions"]["fa"]
    pdf = built_demo / "_site" / fa["pdf"]
    extracted = _body_text(built_demo, pdf)
    text = "".join(persian_words(extracted))
    issue = load_issue(load_publication(built_demo), "2020-03", "fa")
    paragraphs_checked = 0
    for item in issue.items:
        for para in paragraphs(item.body):
            assert not words_in_order(persian_words(para), text), (item.slug, para[:40])
            paragraphs_checked += 1
    assert paragraphs_checked >= 14
    # the Latin name inside a Persian sentence comes out whole
    assert re.search(r"The\s+Valley\s+Post|Post\s+Valley\s+The", extracted)


def test_persian_digits_dates_and_theme_words(built_demo: Path) -> None:
    fa = _edition(built_demo)["editions"]["fa"]
    pages = pdf_page_texts(built_demo / "_site" / fa["pdf"])
    front = re.sub(r"\s+", " ", pages[0])
    assert "در این شماره" in front
    assert "۴۵" in front and "۳" in front and "45" not in front
    assert format_month_year(__import__("datetime").date(2020, 3, 1), "fa") == "اسفند ۱۳۹۸"
    assert "اسفند ۱۳۹۸" in front
    # the contents box gives Persian page numbers
    for item in fa["items"]:
        assert localize_digits(str(item["pages"][0]), "fa") in front
    # page numbers in the footer, in Persian digits
    for n, page in enumerate(pages, start=1):
        assert page.strip().endswith(localize_digits(str(n), "fa"))


def test_arabic_script_font_is_embedded_and_latin_keeps_its_font(built_demo: Path) -> None:
    fa = _edition(built_demo)["editions"]["fa"]
    reader = pypdf.PdfReader(built_demo / "_site" / fa["pdf"])
    fonts = set()
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            fonts.add(str(font["/BaseFont"]))
            descendant = font.get("/DescendantFonts")
            if descendant:
                assert "/FontFile2" in descendant[0].get_object()["/FontDescriptor"] or (
                    "/FontFile3" in descendant[0].get_object()["/FontDescriptor"]
                ), "embedded"
    assert any("Amiri" in f for f in fonts), fonts
    assert any("Libertinus" in f for f in fonts), "Latin text (e.g. URLs) keeps Libertinus"
    assert reader.trailer["/Root"]["/Lang"] == "fa"


def test_dates_in_the_solar_hijri_calendar() -> None:
    from datetime import date

    assert format_long_date(date(2020, 3, 1), "fa") == "۱۱ اسفند ۱۳۹۸"
    assert format_long_date(date(2020, 3, 21), "fa") == "۲ فروردین ۱۳۹۹"
    assert format_long_date(date(2020, 3, 1), "fa", gregorian=True).startswith("۱۱ اسفند ۱۳۹۸ (")
    assert format_long_date(date(2020, 3, 1), "en") == "March 1, 2020"


def test_build_one_language_and_an_unknown_language(demo: Path) -> None:
    build(demo)
    fa_pdf = demo / "_site" / _edition(demo)["editions"]["fa"]["pdf"]
    en_pdf = demo / "_site" / _edition(demo)["pdf"]
    en_before = en_pdf.stat().st_mtime_ns
    lead = demo / "issues/2020-03/lead.fa.md"
    lead.write_text(lead.read_text("utf-8").replace("title: ", "title: تازه ", 1), "utf-8")
    report = build(demo, lang="fa")
    assert [r.slug for r in report.built] == ["2020-03 (fa)"]
    assert en_pdf.stat().st_mtime_ns == en_before, "the English edition was not rendered"
    assert fa_pdf.is_file()
    assert _edition(demo)["editions"]["fa"]["items"][0]["title"].startswith("تازه")
    result = CliRunner().invoke(main, ["build", str(demo), "--lang", "de"])
    assert result.exit_code == 1 and "no 'de' edition" in result.output


def test_translation_tables_must_name_a_language_of_the_publication(tmp_path: Path) -> None:
    from masthead.errors import ConfigError

    (tmp_path / "masthead.toml").write_text('name = "X"\n[translations.fa]\nname = "ایکس"\n')
    with pytest.raises(ConfigError, match=r"\[translations.fa\] names a language"):
        load_publication(tmp_path)


def test_persian_words_inside_an_english_sentence(built_demo: Path) -> None:
    issue = _edition(built_demo)
    text = re.sub(r"\s+", " ", " ".join(pdf_page_texts(built_demo / "_site" / issue["pdf"])))
    # (extractors place the guillemets and parentheses around a right-to-left run at will;
    # the page image shows them right: «بهار دلنشین» (Bahar-e Delneshin))
    match = re.search(r"spring song(.+?)Bahar", text)
    assert match, "the Persian title sits in the English sentence, before its transliteration"
    assert persian_words(match.group(1)) == persian_words("بهار دلنشین")
