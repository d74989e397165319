"""Hostile content files: YAML alias bombs, oversized front matter, values that no date or
number can be, and inputs as large as the error messages quoting them. Each is refused
with a short message naming the file and line, quickly, by the build and the editor app."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from conftest import make_publication
from editor_kit import csrf_of, log_in, set_password
from masthead.cli import main
from masthead.content import load_issue, load_publication
from masthead.errors import ConfigError, ContentError
from masthead.store import dispose_engines
from masthead.web import create_app

ALIASES = "YAML anchors and aliases are not allowed in front matter"


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    dispose_engines()


def bomb(levels: int = 9, key: str = "title") -> str:
    """The review's front matter: each level lists the one before ten times (10**levels
    strings once expanded, from ~400 bytes)."""
    lines = ["a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    for n in range(1, levels):
        lines.append(f"a{n}: &a{n} [" + ",".join([f"*a{n - 1}"] * 10) + "]")
    return "---\n" + "\n".join(lines) + f"\n{key}: *a{levels - 1}\n---\n\nText.\n"


def load_error(tmp_path: Path, text: str, name: str = "a.md") -> ContentError | ConfigError:
    root = make_publication(tmp_path, items={name: text})
    with pytest.raises((ContentError, ConfigError)) as info:
        load_issue(load_publication(root), "2020-03")
    return info.value


# ---- anchors, aliases, merge keys ---------------------------------------------------------


@pytest.mark.parametrize("key", ["title", "published", "kind", "authors", "summary", "nokey"])
def test_the_alias_bomb_is_refused_at_once_with_a_short_message(tmp_path: Path, key: str) -> None:
    text = bomb(key=key)
    assert len(text) < 700
    started = time.perf_counter()
    err = load_error(tmp_path, text)
    assert time.perf_counter() - started < 0.5
    assert isinstance(err, ContentError)
    assert err.path is not None and err.path.name == "a.md"
    assert err.line == 2  # the first anchor, on the front matter's first line
    assert f"{ALIASES}: line 2" in err.message
    assert len(str(err)) < 300


@pytest.mark.parametrize(
    ("front", "line"),
    [
        ("title: &t A title\nsummary: *t", 2),  # an anchor on a plain value
        ("title: A\nauthors:\n  - &p Ann\n  - *p", 4),  # in a block list
        ("title: A\nbase: &b {kind: brief}\n<<: *b", 3),  # merge key through an alias
        ("title: A\n<<: {kind: brief}", 3),  # merge key with no alias at all
        ("title: A\n? !!merge x\n: {kind: brief}", 3),  # the merge tag written out
        ("title: A\nto: {x: &z [1]}\nsigned: [*z]", 3),  # in a flow mapping
        ("title: A\n\n\nsummary: *undefined", 5),  # an alias to no anchor is still refused
    ],
)
def test_every_anchor_alias_and_merge_key_is_refused_with_its_line(
    tmp_path: Path, front: str, line: int
) -> None:
    err = load_error(tmp_path, f"---\n{front}\n---\n\nText.\n")
    assert isinstance(err, ContentError)
    assert err.line == line, err
    assert f"{ALIASES}: line {line}" in err.message
    assert err.fix


def test_an_anchor_sign_inside_text_is_only_text(tmp_path: Path) -> None:
    root = make_publication(
        tmp_path,
        items={"a.md": "---\ntitle: 'Q&A: *the* answers << here'\nsummary: \"&a *b\"\n---\n\nT.\n"},
    )
    item = load_issue(load_publication(root), "2020-03").items[0]
    assert item.meta.title == "Q&A: *the* answers << here"
    assert item.meta.summary == "&a *b"


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    err = load_error(tmp_path, "---\ntitle: A\nauthors: " + "[" * 5000 + "]" * 5000 + "\n---\n")
    assert "nests lists or tables more than" in err.message and err.line == 3


def test_oversized_front_matter_is_refused(tmp_path: Path) -> None:
    err = load_error(tmp_path, "---\ntitle: A\nsummary: " + "x" * 70_000 + "\n---\n\nT.\n")
    assert "the front matter is 68 KB, more than the 64 KB" in err.message
    assert err.line == 1


def test_a_long_summary_in_front_matter_is_fine(tmp_path: Path) -> None:
    root = make_publication(
        tmp_path, items={"a.md": "---\ntitle: A\nsummary: " + "word " * 6000 + "\n---\n\nT.\n"}
    )
    assert load_issue(load_publication(root), "2020-03").items[0].meta.summary


def test_the_bomb_through_masthead_build(tmp_path: Path) -> None:
    root = make_publication(tmp_path, items={"a.md": bomb(), "b.md": "---\ntitle: B\n---\n\nT.\n"})
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["build", str(root)])
    assert time.perf_counter() - started < 0.5
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"a.md:2: {ALIASES}: line 2" in result.output
    assert len(result.output) < 400


# ---- the editor app ---------------------------------------------------------------------


@pytest.fixture
def editor(tmp_path: Path):
    root = make_publication(tmp_path / "pub", items={"b.md": "---\ntitle: Good\n---\n\nText.\n"})
    set_password(root)
    with TestClient(create_app(root), base_url="https://bulletin.example.org") as client:
        assert log_in(client).status_code == 200
        yield root / "issues/2020-03", client


def test_the_bomb_on_the_editors_issue_page(editor: tuple[Path, TestClient]) -> None:
    folder, client = editor
    (folder / "a.md").write_text(bomb(key="published"), "utf-8")
    started = time.perf_counter()
    page = client.get("/admin/issues/2020-03")
    assert time.perf_counter() - started < 0.5
    assert page.status_code == 200
    assert ALIASES in page.text and "Good" in page.text  # the other item is still listed
    assert len(page.content) < 50_000
    assert "lol" not in page.text


def test_the_bomb_on_the_editors_item_page_is_a_message(editor: tuple[Path, TestClient]) -> None:
    folder, client = editor
    (folder / "a.md").write_text(bomb(), "utf-8")
    page = client.get("/admin/issues/2020-03/items/a")
    assert page.status_code == 400
    assert f"a.md, line 2: {ALIASES}" in page.text
    assert len(page.content) < 50_000


@pytest.mark.parametrize(
    ("text", "item_status"),
    [
        ("---\ntitle: A\npublished: 2020-13-45\n---\n\nT.\n", 200),  # the form shows it
        ("---\ntitle: A\npublished: " + "9" * 5000 + "\n---\n\nT.\n", 200),
        ("---\ntitle: [unclosed\n---\n\nT.\n", 400),
        ("---\ntitle: A\nsummary: " + "x" * 70_000 + "\n---\n\nT.\n", 400),
        ("---\ntitle: A\n---\n\n" + "x" * (3 * 1024 * 1024), 400),
    ],
    ids=["bad-date", "huge-number", "bad-yaml", "big-front-matter", "big-file"],
)
def test_bad_items_never_give_the_editor_a_500(
    editor: tuple[Path, TestClient], text: str, item_status: int
) -> None:
    folder, client = editor
    (folder / "a.md").write_text(text, "utf-8")
    issue = client.get("/admin/issues/2020-03")
    assert issue.status_code == 200 and "This issue does not load yet" in issue.text
    assert len(issue.content) < 50_000
    item = client.get("/admin/issues/2020-03/items/a")
    assert item.status_code == item_status
    assert len(item.content) < 50_000 or item_status == 200
    if item_status == 400:
        assert "a.md" in item.text


def test_a_huge_volume_on_the_editors_dashboard(editor: tuple[Path, TestClient]) -> None:
    folder, client = editor
    (folder / "issue.toml").write_text(
        "volume = " + "1" * 5000 + "\nnumber = 2\ndate = 2020-03-01\n", "utf-8"
    )
    page = client.get("/admin/")
    assert page.status_code == 200
    assert "5000 digits long" in page.text
    issue = client.get("/admin/issues/2020-03")
    assert issue.status_code == 200 and "volume must be a whole number between 1" in issue.text


# ---- bounded excerpts of the input in error messages --------------------------------------

BIG = "x" * 100_000


@pytest.mark.parametrize(
    ("file", "text"),
    [
        ("a.md", f"---\ntitle: A\nkind: {BIG}\n---\n\nT.\n"),
        ("a.md", f"---\ntitle: A\npublished: {BIG}\n---\n\nT.\n"),
        ("a.md", f"---\ntitle: A\nsource_url: {BIG}\n---\n\nT.\n"),
        ("a.md", f"---\ntitle: A\n{BIG}: 1\n---\n\nT.\n"),
        ("a.md", f"---\ntitle: {{{BIG}: 1}}\n---\n\nT.\n"),
        ("a.md", f"---\ntitle: A\n---\n\n![a map]({BIG}.png)\n"),
        ("issue.toml", f'volume = 1\nnumber = 2\ndate = 2020-03-01\nitems = ["{BIG}"]\n'),
        ("issue.toml", f'volume = "{BIG}"\nnumber = 2\ndate = 2020-03-01\n'),
        ("issue.toml", f'volume = 1\nnumber = 2\ndate = "{BIG}"\n'),
        ("issue.toml", f"volume = 1\nnumber = 2\ndate = 2020-02-30{BIG}\n"),
        ("masthead.toml", f'name = "X"\nlanguage = "{BIG}"\n'),
        ("masthead.toml", f'name = "X"\nbase_url = "{BIG}"\n'),
        ("masthead.toml", f'name = "X"\n[email]\nfrom = "{BIG}"\n'),
        ("masthead.toml", f'name = "X"\n[serve]\ntrusted_proxies = ["{BIG}"]\n'),
        ("masthead.toml", f'name = "X"\nlanguages = ["en", "fa"]\n[translations.{BIG}]\n'),
        ("masthead.toml", f'name = "X"\n"{BIG}" = 1\n'),
    ],
    ids=lambda v: v[:30].replace("x" * 20, "BIG…"),
)
def test_no_error_message_quotes_more_than_an_excerpt(tmp_path: Path, file: str, text: str) -> None:
    root = make_publication(tmp_path)
    path = root / ("masthead.toml" if file == "masthead.toml" else f"issues/2020-03/{file}")
    path.write_text(text, "utf-8")
    result = CliRunner().invoke(main, ["build", str(root)])
    assert result.exit_code == 1, result.output[:2000]
    assert "Traceback" not in result.output
    assert file in result.output
    assert len(result.output) < 800, result.output[:2000]


# ---- dates and whole numbers: every kind of bad value, through `masthead build` ----------

BAD_DATES_YAML = [
    "2020-13-45",
    "2020-02-30",
    "2020-00-10",
    "2020-03-15 10:00:00",
    "2020-03-15T10:00:00+02:00",
    "2020-03-15 10:00:00 -5",
    "2020-03-15t10:00:00.5z",
    "'2020-03-15 10:00'",
    "March 15, 2020",
    "'15/03/2020'",
    "'2020-03-15x'",
    "[2020-03-15]",
    "{year: 2020}",
    "9" * 5000,
    "0",
    "-1",
    "20200315",
    "1.5",
    "1e400",
    ".nan",
    "true",
    "no",
    "0x7e4",
    "'2020-03-32'",
]


@pytest.mark.parametrize("value", BAD_DATES_YAML, ids=lambda v: v[:20])
def test_a_bad_published_date_is_a_clear_error(tmp_path: Path, value: str) -> None:
    root = make_publication(tmp_path, items={"a.md": f"---\ntitle: A\npublished: {value}\n---\n"})
    result = CliRunner().invoke(main, ["build", str(root)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "a.md:3: `published` is not a valid date" in result.output, result.output[:2000]
    assert "e.g. published: 2020-03-15" in result.output
    assert len(result.output) < 500


BAD_DATES_TOML = [
    "2020-02-30",
    "2020-13-01",
    "2021-02-29",
    "2020-3-1",
    "2020-03-01T10:00:00",
    "2020-03-01T10:00:00Z",
    "2020-03-01 10:00:00+02:00",
    "2020-03-01T25:00:00",
    "2020-03-01T10:00:00Zx",
    "2020-02-30 # a comment",
    "10:00:00",
    '"2020-02-30"',
    '"March 2020"',
    '""',
    "20200301",
    "0",
    "-1",
    "1.5",
    "inf",
    "nan",
    "true",
    "[2020-03-01]",
    "{ year = 2020 }",
    "9" * 5000,
]


@pytest.mark.parametrize("value", BAD_DATES_TOML, ids=lambda v: v[:20])
def test_a_bad_issue_date_is_a_clear_error(tmp_path: Path, value: str) -> None:
    root = make_publication(tmp_path)
    (root / "issues/2020-03/issue.toml").write_text(f"volume = 1\nnumber = 2\ndate = {value}\n")
    result = CliRunner().invoke(main, ["build", str(root)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "issue.toml:3: `date`" in result.output, result.output[:2000]
    assert "date = 2020-03-15" in result.output or "digits long" in result.output
    assert "check quotes and brackets" not in result.output
    assert len(result.output) < 500


BAD_NUMBERS_TOML = [
    "1" * 5000,
    "-" + "1" * 5000,
    "0",
    "-3",
    "10000000",
    "1.5",
    "3.0",
    "1e3",
    "inf",
    "nan",
    "true",
    '"three"',
    '""',
    '"' + "1" * 5000 + '"',
    "[3]",
    "2020-03-01",
]


def test_a_good_date_beside_a_toml_mistake_keeps_the_toml_message(tmp_path: Path) -> None:
    root = make_publication(tmp_path)
    (root / "issues/2020-03/issue.toml").write_text(
        "volume = 1\nnumber = 2\ndate = 2020-03-01 oops\n"
    )
    result = CliRunner().invoke(main, ["build", str(root)])
    assert result.exit_code == 1
    assert "issue.toml:3: this is not valid TOML" in result.output


@pytest.mark.parametrize("key", ["volume", "number"])
@pytest.mark.parametrize("value", BAD_NUMBERS_TOML, ids=lambda v: v[:20])
def test_a_bad_volume_or_number_is_a_clear_error(tmp_path: Path, key: str, value: str) -> None:
    root = make_publication(tmp_path)
    values = {"volume": "1", "number": "2", key: value}
    (root / "issues/2020-03/issue.toml").write_text(
        f"volume = {values['volume']}\nnumber = {values['number']}\ndate = 2020-03-01\n"
    )
    line = 1 if key == "volume" else 2
    result = CliRunner().invoke(main, ["build", str(root)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"issue.toml:{line}: `{key}`" in result.output, result.output[:2000]
    assert f"fix: {key} must be a whole number between 1 and" in result.output
    assert len(result.output) < 500


@pytest.mark.parametrize(
    ("text", "where", "fix"),
    [
        ("columns = " + "7" * 5000, "masthead.toml:2: `columns`", "between 1 and 4"),
        ("columns = true", "masthead.toml:2: `columns`", "between 1 and 4"),
        ("[smtp]\nport = " + "7" * 5000, "masthead.toml:3: `smtp.port`", "between 1 and 65535"),
        ("[smtp]\nport = 25.5", "masthead.toml:3: `smtp.port`", "between 1 and 65535"),
    ],
)
def test_bad_numbers_in_masthead_toml(tmp_path: Path, text: str, where: str, fix: str) -> None:
    root = make_publication(tmp_path)
    (root / "masthead.toml").write_text(f'name = "X"\n{text}\n')
    result = CliRunner().invoke(main, ["build", str(root)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert where in result.output and fix in result.output, result.output[:2000]


def test_an_unknown_key_in_a_translation_table(tmp_path: Path) -> None:
    root = make_publication(tmp_path)
    (root / "masthead.toml").write_text(
        'name = "X"\nlanguages = ["en", "fa"]\n[translations.fa]\nnme = "Y"\n'
    )
    result = CliRunner().invoke(main, ["build", str(root)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "masthead.toml:4: unknown key `translations.fa.nme`" in result.output
    assert "did you mean `name`?" in result.output


@pytest.mark.parametrize(
    ("front", "published"),
    [
        ("published: 2020-03-15", "2020-03-15"),
        ("published: 2020-3-5", "2020-03-05"),
        ("published: '2020-03-15'", "2020-03-15"),
        ("published:", None),
    ],
)
def test_good_dates_still_load(tmp_path: Path, front: str, published: str | None) -> None:
    root = make_publication(tmp_path, items={"a.md": f"---\ntitle: A\n{front}\n---\n\nT.\n"})
    item = load_issue(load_publication(root), "2020-03").items[0]
    assert (item.meta.published.isoformat() if item.meta.published else None) == published


def test_a_title_of_digits_too_long_for_a_number_is_text(tmp_path: Path) -> None:
    root = make_publication(tmp_path, items={"a.md": f"---\ntitle: {'1' * 5000}\n---\n\nT.\n"})
    assert load_issue(load_publication(root), "2020-03").items[0].meta.title == "1" * 5000


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"summary": "x" * 70_000}, "more than the 64 KB"),
        # just under the form's 2 MB a field, but more than 2 MB with the front matter
        ({"body": "word " * (2047 * 1024 // 5), "summary": "y" * 4000}, "more than the 2 MB"),
        ({"published": "2020-13-45"}, "`published` is not a valid date: '2020-13-45'"),
        ({"source_url": "x" * 100_000}, "source_url must be an http:// or https:// address"),
    ],
    ids=["big-summary", "big-body", "bad-date", "huge-url"],
)
def test_the_editor_saves_nothing_the_build_would_refuse(
    editor: tuple[Path, TestClient], fields: dict[str, str], message: str
) -> None:
    folder, client = editor
    path = folder / "b.md"
    before = path.read_bytes()
    page = client.get("/admin/issues/2020-03/items/b").text
    form = {
        "csrf": csrf_of(page),
        "hash": re.search(r'name="hash" value="([^"]+)"', page).group(1),
        "title": "Good",
        "body": "Text.",
        **fields,
    }
    response = client.post("/admin/issues/2020-03/items/b", data=form)
    assert response.status_code == 400
    assert message in html.unescape(response.text)
    assert path.read_bytes() == before
    assert len(re.findall("x{200,}", response.text)) <= 1  # the form field, to edit; no more


def test_front_matter_keys_do_not_steer_the_editors_issue_page(
    editor: tuple[Path, TestClient],
) -> None:
    folder, client = editor
    (folder / "a.md").write_text(
        "---\ntitle: [not, text]\nname: 5\nerror: planted\nkind: {x: 1}\n---\n\nT.\n", "utf-8"
    )
    page = client.get("/admin/issues/2020-03")
    assert page.status_code == 200
    assert 'href="/admin/issues/2020-03/items/a"' in page.text
    assert "planted" not in page.text


@pytest.mark.parametrize("which", ["item", "issue.toml"])
def test_a_linked_file_is_refused_and_its_target_never_published(
    tmp_path: Path, which: str
) -> None:
    """Review of issue 13: the loader followed a symbolic link, so an item (or issue.toml)
    linked to a private file put that file into the editions, or a byte of it into an error
    message; a link is refused by name and nothing of its target reaches _site/."""
    private = tmp_path / "private.txt"
    private.write_text("---\ntitle: PRIVATE-KEY-MATERIAL\n---\n\nPRIVATE-KEY-MATERIAL\n", "utf-8")
    root = make_publication(tmp_path / "pub", items={"a.md": "---\ntitle: A\n---\n\nText.\n"})
    folder = next((root / "issues").iterdir())
    target = folder / ("b.md" if which == "item" else "issue.toml")
    target.unlink(missing_ok=True)
    target.symlink_to(private)
    result = CliRunner().invoke(main, ["build", str(root)])
    assert result.exit_code == 1
    assert "symbolic link" in result.output and target.name in result.output
    assert "Traceback" not in result.output
    site = root / "_site"
    leaked = [p for p in site.rglob("*") if p.is_file() and b"PRIVATE-KEY" in p.read_bytes()]
    assert not leaked
