"""What the browser tests share: Debian's Chromium, driven by Playwright (``playwright
install`` is never run), and npm's axe-core (``.ci/run`` installs both)."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parents[1] / "node_modules" / "axe-core" / "axe.min.js"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    # without these, Chromium reaches for Google's hosts, which this network refuses
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WCAG_22_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
"""axe-core's tags for WCAG 2.2 level AA."""


def missing_tool(reason: str) -> None:
    """A tool the tests need is not installed: skip on a developer's machine, but fail in CI
    (``CI`` is set), where ``.ci/run`` must have installed it — a skip would hide that."""
    import os

    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def run_axe(page, tags: list[str]) -> list[dict]:
    """axe-core's violations on the page for these rule tags, each as id, help and nodes."""
    if not AXE.is_file():
        missing_tool(f"{AXE} is missing (npm install)")
    page.evaluate(AXE.read_text("utf-8") + "\n;0")  # by the DevTools protocol: CSP allows it
    return page.evaluate(
        """async (tags) => {
            const result = await axe.run(document, {runOnly: {type: "tag", values: tags}});
            return result.violations.map(v => ({id: v.id, help: v.help,
                                               nodes: v.nodes.map(n => n.html)}));
        }""",
        tags,
    )
