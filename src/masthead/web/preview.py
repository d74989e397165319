"""The print preview: an issue's pages as PNG images, typeset by Typst from the files.

Rendered on demand and cached by fingerprint (the issue folder's file names, sizes and
modification times, plus ``masthead.toml``): the preview page polls
:meth:`PrintPreviews.get`, which re-typesets only when a file changed, so the pages follow
the editor's saves within a second or two. The page map (each item's first and last page,
the numbers the contents box prints) comes from the same compile.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ..content import load_issue, load_publication
from ..errors import MastheadError
from ..model import Publication

PPI = 96
"""Resolution of the preview images (an A4 page is 794 × 1123 pixels)."""


@dataclass
class Preview:
    """One rendering of an issue (or the error that stopped it)."""

    fingerprint: str
    pages: list[bytes] = field(default_factory=list)
    page_map: dict[str, tuple[int, int]] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The JSON the preview page polls."""
        return {
            "fingerprint": self.fingerprint,
            "page_count": len(self.pages),
            "items": [
                {"slug": slug, "title": self.titles.get(slug, slug), "first": a, "last": b}
                for slug, (a, b) in self.page_map.items()
            ],
            "error": self.error,
            "warnings": self.warnings,
        }


def fingerprint(pub: Publication, slug: str) -> str:
    """What the preview depends on: the issue folder's files and ``masthead.toml``."""
    from ..build import issue_fingerprint

    st = (pub.root / "masthead.toml").stat()
    return issue_fingerprint(pub, slug, f"masthead.toml\0{st.st_size}\0{st.st_mtime_ns}")[:16]


def render_pages(pub: Publication, slug: str, fp: str) -> Preview:
    """Typeset the issue to PNG pages and read its page map."""
    import typst

    from ..render.print.pdf import issue_compiler, read_page_map

    try:
        issue = load_issue(pub, slug)
        compiler = issue_compiler(pub, issue)
        pages = compiler.compile(format="png", ppi=PPI)
        spans, _ = read_page_map(compiler)
    except MastheadError as exc:
        return Preview(fp, error=str(exc))
    except typst.TypstError as exc:
        return Preview(fp, error=f"Typst could not typeset the issue: {exc}")
    if isinstance(pages, bytes):  # a one-page document comes back as bytes, not a list
        pages = [pages]
    titles = {item.slug: item.title for item in issue.items}
    return Preview(fp, list(pages), spans, titles, warnings=list(issue.warnings))


class PrintPreviews:
    """The latest preview of each issue, re-rendered when its fingerprint changes."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self._cache: dict[str, Preview] = {}
        self._lock = threading.Lock()  # one Typst compile at a time

    def get(self, slug: str) -> Preview:
        pub = load_publication(self.root)  # masthead.toml may have changed too
        fp = fingerprint(pub, slug)
        cached = self._cache.get(slug)
        if cached is not None and cached.fingerprint == fp:
            return cached
        with self._lock:
            cached = self._cache.get(slug)
            if cached is not None and cached.fingerprint == fp:
                return cached
            preview = render_pages(pub, slug, fp)
            self._cache[slug] = preview
            return preview

    def cached(self, slug: str) -> Preview | None:
        return self._cache.get(slug)
