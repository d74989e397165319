"""Making folders: a new publication, the next issue, a copy of the bundled demo."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path

from .content import load_issue_config, load_publication
from .errors import MastheadError

SAMPLE_CONFIG = """\
# The publication. Every key is described in the README ("The publication format").
name = "{name}"
tagline = "Periodical publication of {publisher}"
language = "en"            # BCP 47: dates, hyphenation and the theme's own words
paper = "a4"               # or "us-letter"
columns = 2
base_url = "https://bulletin.example.org/"

[publisher]
name = "{publisher}"
about = "Write a few sentences about your organisation here."
address = ["Street and number", "Postcode Town"]
emails = ["editor@example.org"]
website = "https://example.org"
"""

STARTER_ITEM = """\
---
title: {title}
kind: article
authors: []
---

Write the item here in Markdown. Paragraphs are separated by a blank line; *italic*,
**bold**, [links](https://example.org), lists and > quotes work as usual.
"""


@dataclass(frozen=True)
class NewIssue:
    slug: str
    path: Path
    volume: int
    number: int
    date: date


def init_publication(target: Path, *, name: str = "My Bulletin") -> Path:
    """Create a publication folder with ``masthead.toml`` and one sample issue."""
    target = Path(target)
    if (target / "masthead.toml").exists():
        raise MastheadError(
            "a publication already exists here",
            path=target / "masthead.toml",
            fix="choose another folder, or run `masthead new-issue` to add an issue",
        )
    target.mkdir(parents=True, exist_ok=True)
    safe = name.replace("\\", "").replace('"', "'")
    text = SAMPLE_CONFIG.format(name=safe, publisher="the " + safe + " team")
    (target / "masthead.toml").write_text(text, "utf-8")
    (target / ".gitignore").write_text("_site/\n._site.*\n.masthead/\n**/.trash/\n", "utf-8")
    new_issue(target)
    return target


def next_numbers(
    latest: tuple[int, int, date] | None, today: date, rollover: str
) -> tuple[int, int]:
    """The volume and number after ``latest`` (volume, number, date): number + 1, and
    volume + 1 when the year has turned (``rollover = "year"``)."""
    if latest is None:
        return 1, 1
    volume, number, when = latest
    if rollover == "year" and today.year > when.year:
        volume += 1
    return volume, number + 1


def new_issue(
    root: Path, *, today: date | None = None, slug: str | None = None, lang: str | None = None
) -> NewIssue:
    """Create the next issue folder with the next volume/number and today's date, and a
    starter item (with its ``lang`` translation beside it when another language is given)."""
    today = today or date.today()
    pub = load_publication(root)
    if lang is not None and lang not in pub.config.edition_languages:
        raise MastheadError(
            f"this publication has no {lang!r} edition",
            path=pub.root / "masthead.toml",
            fix=f'add it to `languages`, e.g. languages = ["{pub.config.main_language}", "{lang}"]',
        )
    configs = [load_issue_config(pub, s) for s in pub.issue_slugs]
    latest = max(((c.volume, c.number, c.date) for c in configs), default=None)
    volume, number = next_numbers(latest, today, pub.config.volume_rollover)
    slug = slug or _free_slug(pub.issues_dir, today)
    path = pub.issues_dir / slug
    if path.exists():
        raise MastheadError(
            f"issue folder {slug!r} already exists", path=path, fix="choose another --slug"
        )
    path.mkdir(parents=True)
    (path / "issue.toml").write_text(
        f"volume = {volume}\nnumber = {number}\ndate = {today.isoformat()}\n"
        '# title = "A title for this issue"\n'
        '# items = ["lead.md"]   # print order; without it, file-name order\n',
        "utf-8",
    )
    (path / "lead.md").write_text(STARTER_ITEM.format(title="Lead story"), "utf-8")
    if lang and lang != pub.config.main_language:
        (path / f"lead.{lang}.md").write_text(
            STARTER_ITEM.format(title=f"Lead story ({lang})"), "utf-8"
        )
    return NewIssue(slug=slug, path=path, volume=volume, number=number, date=today)


def _free_slug(issues: Path, today: date) -> str:
    for candidate in (f"{today:%Y-%m}", f"{today:%Y-%m-%d}"):
        if not (issues / candidate).exists():
            return candidate
    n = 2
    while (issues / f"{today:%Y-%m-%d}-{n}").exists():
        n += 1
    return f"{today:%Y-%m-%d}-{n}"


def copy_demo(target: Path) -> Path:
    """Copy the bundled demo publication to ``target`` (which must not hold one already)."""
    target = Path(target)
    if (target / "masthead.toml").exists():
        return target  # already there: build it again
    if target.exists() and any(target.iterdir()):
        raise MastheadError(
            "the folder is not empty and holds no publication",
            path=target,
            fix="give `masthead demo` a new or empty folder",
        )
    source = resources.files("masthead") / "demo"
    with resources.as_file(source) as demo_dir:
        shutil.copytree(demo_dir, target, dirs_exist_ok=True)
    return target
