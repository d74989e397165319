"""Shared fixtures: the bundled demo is the main test publication; PDFs are read back for real."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from masthead.scaffold import copy_demo


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A fresh copy of the bundled demo publication (not built)."""
    return copy_demo(tmp_path / "demo")


@pytest.fixture(scope="session")
def built_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo, built once for the tests that only read its output."""
    from masthead.build import build

    root = copy_demo(tmp_path_factory.mktemp("built") / "demo")
    build(root)
    return root


def pdf_page_texts(path: Path) -> list[str]:
    """The text of each page, extracted by PDFium (the engine of Chrome's PDF viewer)."""
    import pypdfium2

    pdf = pypdfium2.PdfDocument(str(path))
    try:
        return [page.get_textpage().get_text_range() for page in pdf]
    finally:
        pdf.close()


def normalise(text: str) -> str:
    """Undo line breaking for comparison: soft hyphens and hyphenation at line ends go,
    runs of white space become one space."""
    text = text.replace("\r\n", "\n").replace("\ufffe", "")
    text = re.sub(r"[\u00ad\u2010-]\s*\n\s*", "", text)  # hyphenated line ends
    text = text.replace("\u00ad", "").replace("\u2060", "")
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
    text = text.replace("\u201d", '"')
    return re.sub(r"\s+", " ", text).strip()


def write_item(folder: Path, name: str, front: str, body: str = "Some text.") -> Path:
    path = folder / name
    path.write_text(f"---\n{front.strip()}\n---\n\n{body}\n", "utf-8")
    return path


def make_publication(root: Path, *, paper: str = "a4", items: dict[str, str] | None = None) -> Path:
    """A small publication with one issue, `2020-03`, holding ``items`` (name → file text)."""
    (root / "issues" / "2020-03").mkdir(parents=True)
    (root / "masthead.toml").write_text(
        f'name = "Test Bulletin"\ntagline = "For tests"\npaper = "{paper}"\n'
        '[publisher]\nname = "Testers"\nabout = "We test."\n',
        "utf-8",
    )
    (root / "issues" / "2020-03" / "issue.toml").write_text(
        "volume = 1\nnumber = 2\ndate = 2020-03-01\n", "utf-8"
    )
    for name, text in (items or {"a.md": "---\ntitle: A\n---\n\nText.\n"}).items():
        (root / "issues" / "2020-03" / name).write_text(text, "utf-8")
    return root


def site_snapshot(site: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(site)): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()
    }


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
