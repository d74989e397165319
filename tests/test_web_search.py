"""`masthead search` on the terminal and the Pagefind index it sits beside."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from masthead.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_search_prints_issue_item_and_print_pages(built_demo: Path) -> None:
    code, out = run("search", str(built_demo), "footbridge council")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == (
        "Letter to the Town Council on the footbridge  Vol. 3 No. 45 (2020-03)  pp. 1–2"
    )
    assert lines[1] == (
        "  2020-03/letter-to-the-council  _site/2020-03/letter-to-the-council/index.html"
    )
    titles = [line for line in lines if not line.startswith(" ")]
    assert "A new flood plan for the lower valley  Vol. 3 No. 45 (2020-03)  p. 1" in titles


def test_search_ignores_case_and_accents_and_looks_in_bylines(built_demo: Path) -> None:
    code, out = run("search", str(built_demo), "LUCIA herrera")
    assert code == 0
    assert out.splitlines()[0].startswith("The town library opens a new reading room")


def test_search_every_word_must_match(built_demo: Path) -> None:
    code, out = run("search", str(built_demo), "kingfishers seedlings")
    assert (code, out) == (0, "No item holds 'kingfishers seedlings'.\n")


def test_search_json_output(built_demo: Path) -> None:
    code, out = run("search", str(built_demo), "kingfishers", "--json")
    assert code == 0
    (match,) = [json.loads(line) for line in out.splitlines()]
    assert match["item"] == "river-report" and match["issue"] == "2020-03"
    assert match["html"] == "2020-03/river-report/index.html"
    assert "kingfishers" in match["snippet"].lower()


def test_search_before_any_build_says_what_to_do(demo: Path) -> None:
    code, out = run("search", str(demo), "river")
    assert code == 1
    assert "no built site" in out and f"run `masthead build {demo}` first" in out


def test_pagefind_indexes_each_item_page_once(built_demo: Path) -> None:
    bundle = built_demo / "_site" / "pagefind" / "part-000"
    entry = json.loads((bundle / "pagefind-entry.json").read_text())
    assert entry["languages"]["en"]["page_count"] == 7
    assert (bundle / "pagefind.js").is_file()
