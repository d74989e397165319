"""Bad input: every error names the file, the line where known, and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_publication
from masthead.content import load_issue, load_publication, parse_markdown
from masthead.errors import ConfigError, ContentError, IssueNotFound, PublicationNotFound


def _issue_error(tmp_path: Path, items: dict[str, str]) -> ContentError | ConfigError:
    root = make_publication(tmp_path, items=items)
    pub = load_publication(root)
    with pytest.raises((ContentError, ConfigError)) as info:
        load_issue(pub, "2020-03")
    return info.value


def test_unknown_front_matter_key_names_key_line_and_suggests(tmp_path: Path) -> None:
    err = _issue_error(tmp_path, {"a.md": "---\ntitle: A\nauthrs: [X]\n---\n\nText.\n"})
    assert err.path is not None and err.path.name == "a.md"
    assert err.line == 3
    assert "unknown key `authrs`" in err.message
    assert err.fix == "did you mean `authors`?"
    assert str(err).startswith(f"{err.path}:3: unknown key `authrs`")


def test_unknown_kind_lists_the_kinds(tmp_path: Path) -> None:
    err = _issue_error(tmp_path, {"a.md": "---\ntitle: A\nkind: editorial\n---\n\nText.\n"})
    assert err.line == 3
    assert "unknown kind 'editorial'" in err.message
    assert err.fix == "use one of: article, reprint, excerpt, letter, brief"


def test_missing_title(tmp_path: Path) -> None:
    err = _issue_error(tmp_path, {"a.md": "---\nkind: brief\n---\n\nText.\n"})
    assert "`title` is required" in err.message


def test_malformed_yaml_gives_the_line(tmp_path: Path) -> None:
    err = _issue_error(
        tmp_path, {"a.md": "---\ntitle: A\nauthors: [X\nkind: brief\n---\n\nText.\n"}
    )
    assert isinstance(err, ContentError)
    assert "not valid YAML" in err.message
    assert err.line == 3  # the line with the unclosed [


def test_bad_date(tmp_path: Path) -> None:
    err = _issue_error(tmp_path, {"a.md": "---\ntitle: A\npublished: March 2020\n---\n\nT.\n"})
    assert err.line == 3
    assert "not a valid date" in err.message and "YYYY-MM-DD" in (err.fix or "")


def test_non_utf8_file_gives_line_and_fix(tmp_path: Path) -> None:
    root = make_publication(tmp_path)
    (root / "issues/2020-03/a.md").write_bytes(
        "---\ntitle: Café\n---\n\nLine\ncaf\xe9\n".encode("latin-1")
    )
    with pytest.raises(ContentError) as info:
        load_issue(load_publication(root), "2020-03")
    assert info.value.line == 2
    assert "UTF-8" in str(info.value)


def test_missing_image_names_the_line(tmp_path: Path) -> None:
    err = _issue_error(tmp_path, {"a.md": "---\ntitle: A\n---\n\nText.\n\n![A map](map.png)\n"})
    assert "image 'map.png' not found" in err.message
    assert err.line == 7


def test_image_outside_the_issue_folder_is_refused(tmp_path: Path) -> None:
    err = _issue_error(tmp_path, {"a.md": "---\ntitle: A\nimage: ../../masthead.toml\n---\n\nT.\n"})
    assert "outside the issue folder" in err.message


def test_items_entry_naming_no_file(tmp_path: Path) -> None:
    root = make_publication(tmp_path)
    toml = root / "issues/2020-03/issue.toml"
    toml.write_text(toml.read_text() + 'items = ["a.md", "missing.md"]\n')
    with pytest.raises(ConfigError) as info:
        load_issue(load_publication(root), "2020-03")
    assert info.value.line == 4
    assert "'missing.md'" in info.value.message and "a.md" in (info.value.fix or "")


def test_empty_issue(tmp_path: Path) -> None:
    root = make_publication(tmp_path, items={})
    with pytest.raises(ContentError, match="no items"):
        load_issue(load_publication(root), "2020-03")


def test_malformed_toml_gives_the_line(tmp_path: Path) -> None:
    root = make_publication(tmp_path)
    (root / "issues/2020-03/issue.toml").write_text("volume = 1\nnumber = 2\ndate = March\n")
    with pytest.raises(ConfigError) as info:
        load_issue(load_publication(root), "2020-03")
    assert info.value.line == 3 and "not valid TOML" in info.value.message


def test_wrong_type_in_issue_toml(tmp_path: Path) -> None:
    root = make_publication(tmp_path)
    (root / "issues/2020-03/issue.toml").write_text(
        'volume = "three"\nnumber = 2\ndate = 2020-03-01\n'
    )
    with pytest.raises(ConfigError) as info:
        load_issue(load_publication(root), "2020-03")
    assert info.value.line == 1 and "`volume`" in info.value.message


def test_unknown_key_in_a_masthead_toml_table(tmp_path: Path) -> None:
    root = make_publication(tmp_path)
    cfg = root / "masthead.toml"
    cfg.write_text(cfg.read_text() + "adress = ['x']\n")
    with pytest.raises(ConfigError) as info:
        load_publication(root)
    assert "unknown key `publisher.adress`" in info.value.message
    assert info.value.fix == "did you mean `address`?"
    assert info.value.line == 7


def test_oversized_item_is_refused(tmp_path: Path) -> None:
    err = _issue_error(tmp_path, {"a.md": "---\ntitle: A\n---\n\n" + "x" * (3 * 1024 * 1024)})
    assert "more than the 2 MB" in err.message


def test_file_name_that_cannot_be_a_web_address(tmp_path: Path) -> None:
    err = _issue_error(tmp_path, {"Lead Story!.md": "---\ntitle: A\n---\n\nT.\n"})
    assert err.fix == "rename it to lead-story.md"


def test_not_a_publication_and_unknown_issue(tmp_path: Path) -> None:
    with pytest.raises(PublicationNotFound, match="masthead init"):
        load_publication(tmp_path)
    root = make_publication(tmp_path / "p")
    with pytest.raises(IssueNotFound) as info:
        load_issue(load_publication(root), "2021-01")
    assert "2020-03" in (info.value.fix or "")


def test_markdown_html_stays_text_and_unsafe_links_lose_their_link() -> None:
    tree = parse_markdown(
        "<script>alert(1)</script>\n\n[click](javascript:alert(1)) "
        "[ok](https://example.org) <img src=x onerror=alert(1)>"
    )
    assert tree[0] == {
        "type": "paragraph",
        "children": [{"type": "text", "text": "<script>alert(1)</script>"}],
    }
    para = tree[1]["children"]
    # the javascript: link is not a link at all: its text stays, as text
    assert para[0] == {"type": "text", "text": "[click](javascript:alert(1)) "}
    assert para[1] == {
        "type": "link",
        "url": "https://example.org",
        "children": [{"type": "text", "text": "ok"}],
    }
    assert para[2]["text"] == " <img src=x onerror=alert(1)>"


def test_headings_never_skip_a_level() -> None:
    tree = parse_markdown("## Two\n\ntext\n\n#### Four\n\nmore\n\n## Two again\n")
    assert [b["level"] for b in tree if b["type"] == "heading"] == [2, 3, 2]
