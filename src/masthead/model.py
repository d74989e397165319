"""The domain model: a publication, its numbered issues, and their items.

Plain data, loaded by :mod:`masthead.content` and rendered by :mod:`masthead.render`.
An item's body is the JSON-able document tree of :mod:`masthead.content.markdown`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from .config import IssueConfig, ItemFrontMatter, Kind, PublicationConfig


@dataclass(frozen=True)
class Item:
    """One article, reprint, excerpt, letter or brief of an issue."""

    slug: str
    path: Path
    meta: ItemFrontMatter
    body: list[dict[str, Any]]
    """The document tree of the Markdown body."""

    @property
    def title(self) -> str:
        return self.meta.title

    @property
    def kind(self) -> Kind:
        return self.meta.kind


@dataclass(frozen=True)
class Issue:
    """One numbered issue: ``issues/<slug>/``."""

    slug: str
    path: Path
    config: IssueConfig
    items: list[Item]
    warnings: list[str] = field(default_factory=list)
    lang: str | None = None
    """The language of this edition of the issue; None for the main language."""

    @property
    def volume(self) -> int:
        return self.config.volume

    @property
    def number(self) -> int:
        return self.config.number

    @property
    def date(self) -> date:
        return self.config.date

    @property
    def title(self) -> str | None:
        return self.config.title


@dataclass(frozen=True)
class Publication:
    """A publication folder: ``masthead.toml`` and ``issues/``."""

    root: Path
    config: PublicationConfig
    issue_slugs: list[str]
    """Issue folder names, in order of (volume, number) as read from the folder names' order
    until the issues are loaded; see :func:`masthead.content.load_issue`."""

    @property
    def issues_dir(self) -> Path:
        return self.root / "issues"

    @property
    def site_dir(self) -> Path:
        return self.root / "_site"

    @property
    def state_dir(self) -> Path:
        """Private working state (database, build cache): never published."""
        return self.root / ".masthead"
