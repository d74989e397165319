"""The build: incremental, atomic (a failed build leaves the last good _site/ as it was),
strict, and the command line around it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import make_publication, site_snapshot
from masthead.build import build
from masthead.cli import main
from masthead.errors import BuildWarning, ContentError


def test_a_failed_build_leaves_the_last_good_site_untouched(demo: Path) -> None:
    build(demo)
    before = site_snapshot(demo / "_site")
    lead = demo / "issues/2020-03/lead.md"
    lead.write_text(lead.read_text().replace("kind: article", "kind: editorial"))
    with pytest.raises(ContentError):
        build(demo)
    assert site_snapshot(demo / "_site") == before
    assert not any(p.name.startswith("._site") for p in demo.iterdir()), "staging cleaned up"


def test_bad_input_of_every_sort_fails_cleanly_through_the_cli(demo: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["build", str(demo), "-q"]).exit_code == 0
    before = site_snapshot(demo / "_site")
    cases = {
        "issues/2020-03/lead.md": (
            "---\ntitle: [unclosed\n---\nText\n",
            "lead.md:2",
            "not valid YAML",
        ),
        "issues/2020-03/issue.toml": (
            "volume = 3\nnumber = \ndate = 2020-03-01\n",
            "issue.toml:2",
            "not valid TOML",
        ),
        "masthead.toml": ('name = "X"\npaper = "a5"\n', "masthead.toml:2", "paper"),
    }
    for name, (text, where, what) in cases.items():
        path = demo / name
        original = path.read_bytes()
        path.write_text(text)
        result = runner.invoke(main, ["build", str(demo)])
        assert result.exit_code == 1, name
        assert where in result.output and what in result.output, result.output
        assert "Traceback" not in result.output
        assert site_snapshot(demo / "_site") == before
        path.write_bytes(original)


def test_an_unchanged_build_does_nothing_and_an_edit_rebuilds_one_issue(demo: Path) -> None:
    first = build(demo)
    assert [r.slug for r in first.built] == ["2020-03"]
    pdf = (
        demo / "_site" / json.loads((demo / "_site/manifest.json").read_text())["issues"][0]["pdf"]
    )
    mtime = pdf.stat().st_mtime_ns
    again = build(demo)
    assert again.noop and again.unchanged == ["2020-03"]
    assert pdf.stat().st_mtime_ns == mtime

    # a second issue: only it is rendered
    second = demo / "issues/2020-04"
    second.mkdir()
    (second / "issue.toml").write_text("volume = 3\nnumber = 46\ndate = 2020-04-01\n")
    (second / "note.md").write_text("---\ntitle: April note\nkind: brief\n---\n\nShort.\n")
    report = build(demo)
    assert [r.slug for r in report.built] == ["2020-04"] and report.unchanged == ["2020-03"]
    manifest = json.loads((demo / "_site/manifest.json").read_text())
    assert [i["slug"] for i in manifest["issues"]] == ["2020-04", "2020-03"], "newest first"

    # editing an item re-renders its issue only
    note = second / "note.md"
    note.write_text(note.read_text().replace("Short.", "Shorter."))
    os.utime(note, ns=(note.stat().st_atime_ns, note.stat().st_mtime_ns + 1_000_000))
    report = build(demo)
    assert [r.slug for r in report.built] == ["2020-04"]

    # a removed issue leaves the site and the manifest
    for p in second.iterdir():
        p.unlink()
    second.rmdir()
    build(demo)
    manifest = json.loads((demo / "_site/manifest.json").read_text())
    assert [i["slug"] for i in manifest["issues"]] == ["2020-03"]
    assert not (demo / "_site/2020-04").exists()


def test_build_one_issue_and_an_unknown_issue(demo: Path) -> None:
    report = build(demo, issue="2020-03")
    assert [r.slug for r in report.built] == ["2020-03"]
    result = CliRunner().invoke(main, ["build", str(demo), "--issue", "1999-01"])
    assert result.exit_code == 1 and "no issue '1999-01'" in result.output
    assert "2020-03" in result.output


def test_strict_turns_warnings_into_errors(tmp_path: Path) -> None:
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        '<rect width="10" height="10"/></svg>'
    )
    root = make_publication(
        tmp_path, items={"a.md": "---\ntitle: A\n---\n\nText.\n\n![](dot.svg)\n"}
    )
    (root / "issues/2020-03/dot.svg").write_text(svg)
    report = build(root)
    assert "no alt text" in report.warnings[0]
    assert "PDF/UA-1 error: missing alt text" in report.warnings[1]
    (root / "issues/2020-03/a.md").touch()
    before = site_snapshot(root / "_site")
    with pytest.raises(BuildWarning, match="no alt text"):
        build(root, strict=True, force=True)
    assert site_snapshot(root / "_site") == before


def test_manifest_contract(built_demo: Path) -> None:
    manifest = json.loads((built_demo / "_site/manifest.json").read_text())
    assert manifest["publication"]["name"] == "Riverside Bulletin"
    issue = manifest["issues"][0]
    assert {k: issue[k] for k in ("slug", "volume", "number", "date")} == {
        "slug": "2020-03",
        "volume": 3,
        "number": 45,
        "date": "2020-03-01",
    }
    assert (built_demo / "_site" / issue["pdf"]).is_file()
    assert issue["page_count"] >= 4
    kinds = {i["kind"] for i in issue["items"]}
    assert kinds == {"article", "reprint", "excerpt", "letter", "brief"}
    for item in issue["items"]:
        first, last = item["pages"]
        assert 1 <= first <= last <= issue["page_count"]
    assert not any(k.startswith("_") for k in issue)


def test_cli_summary_quiet_and_verbose(demo: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["build", str(demo)])
    assert result.exit_code == 0
    assert "built 2020-03: 5 pages, 7 items" in result.output or "built 2020-03:" in result.output
    assert "Built 1 issue(s)" in result.output
    assert runner.invoke(main, ["build", str(demo), "--quiet"]).output == ""
    verbose = runner.invoke(main, ["build", str(demo), "--verbose"])
    assert "unchanged: 2020-03" in verbose.output and "Nothing to do" in verbose.output
