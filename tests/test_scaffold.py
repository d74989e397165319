"""init, new-issue and demo: the folders an editor starts from."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

from click.testing import CliRunner

from masthead.build import build
from masthead.cli import main
from masthead.config import reference_markdown
from masthead.scaffold import init_publication, new_issue, next_numbers


def test_init_makes_a_publication_that_builds(tmp_path: Path) -> None:
    root = init_publication(tmp_path / "pub", name='The "Quoted" Bulletin')
    assert tomllib.loads((root / "masthead.toml").read_text())["name"] == "The 'Quoted' Bulletin"
    report = build(root)
    assert len(report.built) == 1 and report.built[0].pages == 1


def test_new_issue_numbers_and_volume_rollover(tmp_path: Path) -> None:
    root = init_publication(tmp_path / "pub")
    first = tomllib.loads(next((root / "issues").glob("*/issue.toml")).read_text())
    assert (first["volume"], first["number"]) == (1, 1)
    made = new_issue(root, today=date(2099, 1, 10))
    assert (made.volume, made.number, made.slug) == (2, 2, "2099-01")
    made = new_issue(root, today=date(2099, 1, 20))
    assert (made.volume, made.number, made.slug) == (2, 3, "2099-01-20")
    assert next_numbers((3, 45, date(2020, 3, 1)), date(2020, 4, 1), "year") == (3, 46)
    assert next_numbers((3, 45, date(2020, 12, 1)), date(2021, 1, 1), "year") == (4, 46)
    assert next_numbers((3, 45, date(2020, 12, 1)), date(2021, 1, 1), "never") == (3, 46)


def test_new_issue_cli(tmp_path: Path) -> None:
    root = init_publication(tmp_path / "pub")
    result = CliRunner().invoke(main, ["new-issue", str(root), "--date", "2099-05-02"])
    assert result.exit_code == 0, result.output
    assert "Volume 2 Number 2, 2099-05-02" in result.output
    assert (root / "issues/2099-05/issue.toml").is_file()


def test_demo_command_builds_the_bundled_publication(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d/_site/manifest.json").is_file()
    assert "built 2020-03" in result.output


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    for name, command in main.commands.items():
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0
        assert command.help, f"{name} has no help"
        if name != "reference":
            assert "Example" in command.help, f"{name} --help shows no example"


def test_readme_documents_every_key_of_the_format() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text("utf-8")
    assert reference_markdown() in readme, "run `masthead reference` and paste it into the README"
