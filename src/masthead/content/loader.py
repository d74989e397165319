"""Read a publication folder into the model, with errors that name file, line and fix."""

from __future__ import annotations

import errno
import os
import re
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..config import IssueConfig, ItemFrontMatter, PublicationConfig, number_rule, validate
from ..errors import (
    ConfigError,
    ContentError,
    IssueNotFound,
    PublicationNotFound,
    excerpt,
    shorten,
)
from ..model import Issue, Item, Publication
from .front_matter import parse_front_matter
from .markdown import parse_markdown, walk_blocks

MAX_ITEM_BYTES = 2 * 1024 * 1024
"""An item file larger than this is refused: it is almost certainly not hand-written text."""

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}
SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# `lead.fa.md` is the Persian translation of `lead.md`: not an item of the main edition.
TRANSLATION = re.compile(r"^(?P<stem>.+)\.(?P<lang>[a-z]{2,3}(-[A-Za-z0-9]+)*)$")


def read_text(path: Path, *, limit: int = MAX_ITEM_BYTES) -> str:
    """A file's text as UTF-8 (a BOM is dropped); non-UTF-8 and oversized files are refused."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise ContentError("file not found", path=path) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link: it could publish a file from anywhere
            raise ContentError(
                "is a symbolic link; Masthead does not follow links in a publication (one "
                "could put any file of the machine into the editions)",
                path=path,
                fix="replace the link by a copy of the file",
            ) from None
        raise
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise ContentError(
                f"file is {size / 1024 / 1024:.1f} MB, more than the {limit // 1024 // 1024} "
                "MB an item may hold",
                path=path,
                fix="split it into several items, or keep large media beside it as files",
            )
        data = handle.read(limit + 1)
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ContentError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            path=path,
            line=line,
            fix="save the file as UTF-8 (most editors offer it under 'Save with encoding')",
        ) from None


def _read_toml(path: Path, model: type[BaseModel]) -> tuple[dict[str, Any], str]:
    text = read_text(path, limit=1024 * 1024)
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise _bad_date(path, text, line) or _not_toml(path, exc, line) from None
    except ValueError:  # tomllib lets int()'s digit limit (sys.get_int_max_str_digits) out
        raise _huge_number(path, text, model) from None


def _not_toml(path: Path, exc: tomllib.TOMLDecodeError, line: int | None) -> ConfigError:
    message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
    return ConfigError(
        f"this is not valid TOML: {shorten(message, 200)}",
        path=path,
        line=line,
        fix='check quotes and brackets; strings need quotes, e.g. name = "Bulletin"',
    )


# `key = 2020-02-30`: tomllib calls a date that is not in the calendar "invalid TOML"
_TOML_KEY = re.compile(r"\s*(?P<key>[\w.\"'-]+)\s*=")
_TOML_DATE = re.compile(r"(?<![\w\"'.-])\d{4}-\d{1,2}-\d{1,2}[^\s,\]}]*")


def _bad_date(path: Path, text: str, line: int | None) -> ConfigError | None:
    """The error for a date on ``line`` that is not a date of the calendar, if it is one."""
    lines = text.splitlines()
    if line is None or not 0 < line <= len(lines):
        return None
    found = _TOML_DATE.search(lines[line - 1])  # also in an array: [2020-02-30]
    if found is None:
        return None
    setting = _TOML_KEY.match(lines[line - 1])
    key = setting.group("key").strip("\"'") if setting else "date"
    value = found.group()
    day = re.match(r"(\d{4})-(\d{1,2})-(\d{1,2})", value)
    assert day is not None  # the pattern above starts the same way
    try:
        date(*(int(part) for part in day.groups()))
    except ValueError as exc:  # month 13, 30 February
        reason = str(exc)
    else:
        reason = _date_form_problem(value, day.end())
        if reason is None:  # a good date: the line's problem is something else
            return None
    return ConfigError(
        f"`{shorten(key)}` is not a valid date: {excerpt(value)} ({reason})",
        path=path,
        line=line,
        fix=f"write a date as YYYY-MM-DD, with no quotes, e.g. {shorten(key)} = 2020-03-15",
    )


def _date_form_problem(value: str, date_end: int) -> str | None:
    """What is wrong with the form of ``value``, a real calendar day, if anything."""
    if date_end != 10:
        return "write it as YYYY-MM-DD, month and day with two digits"
    if date_end < len(value):
        try:
            datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            return "not a valid time of day; an issue's date needs none"
    return None


def _huge_number(path: Path, text: str, model: type[BaseModel]) -> ConfigError:
    """The error for an integer too long for Python to read: its key, line and bounds."""
    table: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"\s*\[+\s*([^\[\]]+?)\s*\]", line)
        if header:
            table = [part.strip().strip("\"'") for part in header.group(1).split(".")]
        digits = re.search(r"[0-9][0-9_]{999,}", line)
        if digits is None:
            continue
        setting = re.match(r"\s*([\w\"'-]+)\s*=", line)
        key = [*table, setting.group(1).strip("\"'")] if setting else table
        shown = shorten(".".join(key)) or "a value"
        count = sum(c.isdigit() for c in digits.group())
        return ConfigError(
            f"`{shown}` is a number {count} digits long: {excerpt(digits.group(), 40)}",
            path=path,
            line=number,
            fix=number_rule(model, key) or "write a whole number of a sensible size",
        )
    return ConfigError(
        "a number in this file is too long to read",
        path=path,
        fix="write whole numbers of a sensible size",
    )


def load_publication(root: Path | str) -> Publication:
    """Read ``masthead.toml`` and list the issue folders (issues are loaded on demand)."""
    root = Path(root).resolve()
    config_path = root / "masthead.toml"
    if not config_path.is_file():
        raise PublicationNotFound(
            "no masthead.toml here: this folder is not a Masthead publication",
            path=root,
            fix="run `masthead init DIR` to start one, or pass the publication's folder",
        )
    data, text = _read_toml(config_path, PublicationConfig)
    config = validate(PublicationConfig, data, path=config_path, text=text)
    issues_dir = root / "issues"
    slugs = (
        sorted(p.name for p in issues_dir.iterdir() if (p / "issue.toml").is_file())
        if issues_dir.is_dir()
        else []
    )
    return Publication(root=root, config=config, issue_slugs=slugs)


def issue_dir(pub: Publication, slug: str) -> Path:
    path = pub.issues_dir / slug
    if slug not in pub.issue_slugs:
        known = ", ".join(pub.issue_slugs) or "none yet"
        raise IssueNotFound(
            f"no issue {excerpt(slug)} in {pub.issues_dir}",
            fix=f"issues here: {known}; `masthead new-issue` starts one",
        )
    return path


def load_issue_config(pub: Publication, slug: str) -> IssueConfig:
    path = issue_dir(pub, slug) / "issue.toml"
    data, text = _read_toml(path, IssueConfig)
    return validate(IssueConfig, data, path=path, text=text)


def item_files(folder: Path) -> list[Path]:
    """The main-language item files of an issue folder, in file-name order."""
    return sorted(
        p
        for p in folder.glob("*.md")
        if p.is_file() and not TRANSLATION.match(p.stem) and not p.name.startswith(".")
    )


def load_issue(pub: Publication, slug: str, lang: str | None = None) -> Issue:
    """Load one issue and all its items; raise on the first problem, collect warnings.

    With ``lang`` other than the main language, load that language's edition: the
    translations (``<name>.<lang>.md``) of the main items that have one, in the same order,
    each keeping its main item's slug."""
    folder = issue_dir(pub, slug)
    config = load_issue_config(pub, slug)
    files = _ordered_items(folder, config)
    warnings: list[str] = []
    main = pub.config.main_language
    if lang is None or lang == main:
        items = [load_item(path, warnings) for path in files]
        return Issue(slug=slug, path=folder, config=config, items=items, warnings=warnings)
    known = {p.stem for p in files}
    for orphan in sorted(folder.glob(f"*.{lang}.md")):
        if orphan.name[: -len(f".{lang}.md")] not in known:
            warnings.append(
                f"{orphan}: a {lang} translation of no item of this issue (no "
                f"{orphan.name[: -len(f'.{lang}.md')]}.md beside it)"
            )
    items = [
        load_item(translation, warnings, slug=path.stem)
        for path in files
        if (translation := path.with_name(f"{path.stem}.{lang}.md")).is_file()
    ]
    return Issue(slug=slug, path=folder, config=config, items=items, warnings=warnings, lang=lang)


def _ordered_items(folder: Path, config: IssueConfig) -> list[Path]:
    available = item_files(folder)
    toml_path = folder / "issue.toml"
    if config.items is None:
        files = available
    else:
        by_name = {p.name: p for p in available} | {p.stem: p for p in available}
        files = []
        for entry in config.items:
            if entry not in by_name:
                text = toml_path.read_text(encoding="utf-8")
                line = next(
                    (i + 1 for i, s in enumerate(text.splitlines()) if f'"{entry}"' in s), None
                )
                names = ", ".join(p.name for p in available) or "none"
                raise ConfigError(
                    f"`items` names {excerpt(entry)}, but there is no such file in {folder.name}/",
                    path=toml_path,
                    line=line,
                    fix=f"correct or remove the entry; item files here: {names}",
                )
            files.append(by_name[entry])
    if not files:
        raise ContentError(
            "this issue has no items",
            path=folder,
            fix="add at least one Markdown file (e.g. lead.md with a `title:` front matter)",
        )
    return files


FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*\r?$\n?", re.S | re.M)


def load_item(path: Path, warnings: list[str], *, slug: str | None = None) -> Item:
    """Read one item: YAML front matter, then the Markdown body. A translation passes the
    slug of the item it translates."""
    slug = slug or path.stem
    if not SLUG.match(slug):
        better = re.sub(r"[^A-Za-z0-9_-]+", "-", slug).strip("-").lower() or "item"
        raise ContentError(
            "the file name becomes the item's web address, and this one has spaces or signs",
            path=path,
            fix=f"rename it to {better}.md",
        )
    text = read_text(path)
    match = FRONT_MATTER.match(text)
    if not match:
        raise ContentError(
            "no front matter: an item starts with a `---` line, `title: …`, and another `---`",
            path=path,
            line=1,
            fix="add at the top:\n---\ntitle: Your title\n---",
        )
    data = parse_front_matter(match.group(1), path=path)
    meta = validate(
        ItemFrontMatter, data or {}, path=path, text=match.group(1), line_offset=1, sep=":"
    )
    body_start = match.group(0).count("\n") + 1
    body = parse_markdown(text[match.end() :], first_line=body_start)
    _check_images(path, meta, body, text, warnings)
    if not body and meta.kind != "letter":
        warnings.append(f"{path}: the item has a title but no text")
    return Item(slug=slug, path=path, meta=meta, body=body)


def _check_images(
    path: Path, meta: ItemFrontMatter, body: list[dict[str, Any]], text: str, warnings: list[str]
) -> None:
    folder = path.parent
    images: list[tuple[str, str | None, int | None]] = []
    if meta.image:
        line = next((i + 1 for i, s in enumerate(text.splitlines()) if s.startswith("image:")), 2)
        images.append((meta.image, meta.image_alt, line))
    for block in walk_blocks(body):
        if block["type"] == "image":
            images.append((block["src"], block["alt"], block.get("line")))
    for src, alt, line in images:
        if re.match(r"^[a-z][a-z0-9+.-]*:", src, re.I):
            warnings.append(
                f"{path}:{line}: image {excerpt(src)} is a web address; only images beside the "
                "item are printed (download it next to the item)"
            )
            continue
        try:
            target = (folder / src).resolve()
            present = target.is_file()
        except OSError:  # a name longer than the system allows, a loop of links
            target, present = folder / "?", False
        if not target.is_relative_to(folder.resolve()):
            raise ContentError(
                f"image {excerpt(src)} lies outside the issue folder",
                path=path,
                line=line,
                fix="put the image beside the item and name it without ../",
            )
        if not present:
            raise ContentError(
                f"image {excerpt(src)} not found in {folder.name}/",
                path=path,
                line=line,
                fix="add the file beside the item, or correct its name",
            )
        if target.suffix.lower() not in IMAGE_SUFFIXES:
            raise ContentError(
                f"image {excerpt(src)} is not a PNG, JPEG, GIF, SVG or WebP file",
                path=path,
                line=line,
                fix="convert it to PNG or JPEG",
            )
        if not (alt or "").strip():
            warnings.append(
                f"{path}:{line}: image {excerpt(src)} has no alt text; describe it for readers who "
                "cannot see it (image_alt: … or ![what it shows](file))"
            )
