"""The declared schema of ``masthead.toml``, ``issue.toml`` and item front matter.

Every field is documented once, here; ``masthead reference`` prints the README's
format reference from these docstrings, and a test keeps the two in step.
Validation errors are turned into :class:`~masthead.errors.MastheadError` that name the
file, the key, the line and the fix (:func:`validate`).
"""

from __future__ import annotations

import difflib
import re
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError, ContentError, MastheadError

M = TypeVar("M", bound=BaseModel)


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class Kind(StrEnum):
    """What an item is; each kind is laid out as a periodical lays it out."""

    article = "article"
    reprint = "reprint"
    excerpt = "excerpt"
    letter = "letter"
    brief = "brief"


KINDS = [k.value for k in Kind]


def _http_url(value: str | None, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not re.match(r"^https?://[^\s/$.?#][^\s]*$", value, re.IGNORECASE):
        raise ValueError(f"{field} must be an http:// or https:// address, got {value!r}")
    return value


class PublisherConfig(_Schema):
    """``[publisher]`` in ``masthead.toml``: who publishes; printed in the publisher box."""

    name: str = ""
    """The organisation's name, e.g. "Riverside Community Association"."""
    about: str = ""
    """A paragraph about the organisation, printed in the publisher box."""
    address: list[str] = []
    """Postal address, one line per entry."""
    emails: list[str] = []
    """Contact email addresses."""
    website: str | None = None
    """The organisation's web site (http:// or https://)."""

    @field_validator("website")
    @classmethod
    def _website(cls, v: str | None) -> str | None:
        return _http_url(v, "website")


class PublicationConfig(_Schema):
    """``masthead.toml``: the publication itself."""

    name: str = Field(min_length=1)
    """The publication's name, printed in the masthead, e.g. "Riverside Bulletin"."""
    tagline: str = ""
    """One line under the name, e.g. "Periodical publication of the ... Association"."""
    language: str = "en"
    """The main language as a BCP 47 tag ("en", "fr", "fa"): dates, hyphenation, theme words."""
    paper: Literal["a4", "us-letter"] = "a4"
    """Paper size of the print edition: "a4" or "us-letter"."""
    columns: int = Field(default=2, ge=1, le=4)
    """Number of text columns on a printed page (1 to 4)."""
    base_url: str = "https://example.org/"
    """Where the web edition is published; links in feeds and emails are built from it."""
    volume_rollover: Literal["year", "never"] = "year"
    """When ``masthead new-issue`` starts a new volume: "year" (when the year turns) or
    "never" (volume stays; numbers keep counting)."""
    theme: str | None = None
    """A Typst theme file inside the publication folder to use instead of the built-in one."""
    publisher: PublisherConfig = PublisherConfig()
    """The ``[publisher]`` table."""

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        url = _http_url(v, "base_url") or "https://example.org/"
        return url if url.endswith("/") else url + "/"

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", v):
            raise ValueError(f'language must be a BCP 47 tag such as "en" or "fa", got {v!r}')
        return v


class IssueConfig(_Schema):
    """``issues/<slug>/issue.toml``: one numbered issue."""

    volume: int = Field(ge=1)
    """Volume number (an integer, 1 or more)."""
    number: int = Field(ge=1)
    """Issue number (an integer, 1 or more); many periodicals count on across volumes."""
    date: date
    """The issue's date, a TOML date such as 2020-03-01 (no quotes)."""
    title: str | None = None
    """An optional title for the issue, e.g. "Special issue on water"."""
    items: list[str] | None = None
    """Item file names in print order; without it, items are taken in file-name order."""


class ItemFrontMatter(_Schema):
    """The YAML front matter of an item (``issues/<slug>/<item>.md``)."""

    title: str = Field(min_length=1)
    """The item's title (required)."""
    kind: Kind = Kind.article
    """One of article, reprint, excerpt, letter, brief (default article)."""
    authors: list[str] = []
    """Authors, as a list (a single name is accepted too)."""
    source: str | None = None
    """The outlet a reprint or excerpt comes from, e.g. "The Valley Post"."""
    source_url: str | None = None
    """The address of the original article (http:// or https://)."""
    published: date | None = None
    """When the original was published (a reprint's or excerpt's date; a letter's date)."""
    summary: str | None = None
    """A one- or two-sentence summary, used in contents, feeds and emails."""
    image: str | None = None
    """A lead image file beside the item (PNG, JPEG, GIF or SVG)."""
    image_alt: str | None = None
    """Alternative text for the lead image: what it shows, for readers who cannot see it."""
    caption: str | None = None
    """A caption printed under the lead image."""
    to: list[str] = []
    """A letter's addressee block, one line per entry."""
    salutation: str | None = None
    """A letter's salutation, e.g. "Dear Minister,"."""
    signed: list[str] = []
    """A letter's signature block, one line per entry (a single string is accepted too)."""

    @field_validator("authors", "to", "signed", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [v]
        return [] if v is None else v

    @field_validator("source_url")
    @classmethod
    def _source_url(cls, v: str | None) -> str | None:
        return _http_url(v, "source_url")


# ----------------------------------------------------------------------------------------
# Turning pydantic's errors into an editor's error message


def find_key_line(text: str, key: str, *, sep: str = "=", table: str | None = None) -> int | None:
    """The 1-based line where ``key`` is set in TOML (``sep='='``) or YAML (``sep=':'``)."""
    lines = text.splitlines()
    start = 0
    if table is not None:
        for i, line in enumerate(lines):
            if re.match(rf"^\s*\[\s*{re.escape(table)}\s*\]", line):
                start = i + 1
                break
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*{re.escape(sep)}")
    for i in range(start, len(lines)):
        if pattern.match(lines[i]):
            return i + 1
    return None


def _describe(error: dict[str, Any], model: type[BaseModel]) -> tuple[str, str | None, str]:
    """(message, fix, key) for one pydantic error."""
    loc = [str(p) for p in error["loc"] if not isinstance(p, int)]
    key = ".".join(loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        parent: type[BaseModel] = model
        for part in loc[:-1]:
            annotation = parent.model_fields[part].annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                parent = annotation
        known = list(parent.model_fields)
        close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
        fix = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(known)}"
        return f"unknown key `{key}`", fix, key
    if kind == "missing":
        return f"`{key}` is required but missing", f"add `{key}`", key
    if kind == "enum" and loc and loc[-1] == "kind":
        return (
            f"unknown kind {error.get('input')!r}",
            f"use one of: {', '.join(KINDS)}",
            key,
        )
    if kind.startswith("date"):
        return (
            f"`{key}` is not a valid date: {error.get('input')!r}",
            "write a date as YYYY-MM-DD, e.g. 2020-03-01",
            key,
        )
    message = error["msg"].removeprefix("Value error, ")
    return f"`{key}`: {message}", None, key


def validate(
    model: type[M],
    data: Any,
    *,
    path: Path,
    text: str,
    line_offset: int = 0,
    sep: str = "=",
) -> M:
    """Validate ``data`` against ``model``; on failure raise an error naming file, key, line."""
    error_class: type[MastheadError] = ContentError if sep == ":" else ConfigError
    if not isinstance(data, dict):
        raise error_class(
            "expected a set of `key: value` lines" if sep == ":" else "expected a TOML table",
            path=path,
            line=line_offset + 1,
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message, fix, key = _describe(first, model)
        parts = key.split(".")
        table = ".".join(parts[:-1]) if sep == "=" and len(parts) > 1 else None
        line = find_key_line(text, parts[-1], sep=sep, table=table)
        more = len(exc.errors()) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise error_class(
            message, path=path, line=(line + line_offset) if line else None, fix=fix
        ) from None


# ----------------------------------------------------------------------------------------
# The format reference, generated from the docstrings above


def reference_markdown() -> str:
    """The format reference as Markdown, one table per file (the README embeds it)."""
    sections = [
        ("masthead.toml", PublicationConfig, ""),
        ("masthead.toml `[publisher]`", PublisherConfig, "publisher."),
        ("issue.toml", IssueConfig, ""),
        ("Item front matter", ItemFrontMatter, ""),
    ]
    out: list[str] = []
    for heading, model, prefix in sections:
        out.append(f"#### {heading}\n")
        out.append("| key | default | meaning |")
        out.append("| --- | --- | --- |")
        for name, field in model.model_fields.items():
            if name == "publisher":
                continue
            if field.is_required():
                default = "required"
            else:
                value = field.get_default(call_default_factory=True)
                default = "—" if value in (None, [], "") else f"`{value}`"
            doc = " ".join((field.description or "").split())
            out.append(f"| `{prefix}{name}` | {default} | {doc} |")
        out.append("")
    return "\n".join(out)
