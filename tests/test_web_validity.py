"""Every page of the demo (and of a hostile item) is valid HTML5 for the Nu HTML checker.

Needs Java (Debian ``default-jre-headless``) and npm's ``vnu-jar``; ``.ci/run`` installs both.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from browser import missing_tool
from conftest import make_publication
from masthead.build import build
from test_web_security import EVIL_SVG, HOSTILE_ITEM

VNU = Path(__file__).parents[1] / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"

# The checker's CSP grammar predates CSP Level 3's 'wasm-unsafe-eval', which the search page
# needs to run Pagefind's WebAssembly; browsers accept it (test_web_browser.py runs search).
KNOWN_CHECKER_GAPS = ("Expecting source-expression but found \"'wasm-unsafe-eval'\"",)


def _check(files: list[Path]) -> list[dict]:
    java = shutil.which("java")
    if java is None:
        missing_tool("java is not installed (apt-get install default-jre-headless)")
    if not VNU.is_file():
        missing_tool(f"{VNU} is missing (npm install)")
    result = subprocess.run(
        [java, "-jar", str(VNU), "--errors-only", "--format", "json", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    messages = json.loads(result.stderr or result.stdout)["messages"]
    return [
        {"file": m.get("url", "").rsplit("_site/", 1)[-1], "line": m.get("lastLine"),
         "message": m["message"]}
        for m in messages
        if not any(gap in m["message"] for gap in KNOWN_CHECKER_GAPS)
    ]  # fmt: skip


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "pagefind" not in p.parts)


def test_every_page_is_valid_html5(built_demo: Path, tmp_path: Path) -> None:
    hostile = make_publication(tmp_path / "pub", items={"evil.md": HOSTILE_ITEM})
    (hostile / "issues" / "2020-03" / "evil.svg").write_text(EVIL_SVG, "utf-8")
    build(hostile)
    files = _pages(built_demo / "_site") + _pages(hostile / "_site")
    assert len(files) > 12
    assert _check(files) == []
