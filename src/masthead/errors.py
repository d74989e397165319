"""Masthead's exceptions: each says what happened, where, and how to fix it.

The CLI turns any :class:`MastheadError` into one ``Error: …`` line and a non-zero exit;
nothing else is caught, so a bug still shows its traceback.
"""

from __future__ import annotations

from pathlib import Path


class MastheadError(Exception):
    """Base of every error an editor can fix by changing their files or command."""

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.fix = fix
        super().__init__(str(self))

    def where(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}" if self.line else str(self.path)

    def __str__(self) -> str:
        where = self.where()
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class ConfigError(MastheadError):
    """``masthead.toml`` or ``issue.toml`` is malformed or holds a wrong value."""


class ContentError(MastheadError):
    """An item file (Markdown with front matter) cannot be read as it stands."""


class PublicationNotFound(MastheadError):
    """The folder given is not a publication (no ``masthead.toml``)."""


class IssueNotFound(MastheadError):
    """``--issue SLUG`` names no issue folder."""


class RenderError(MastheadError):
    """An edition could not be rendered (e.g. Typst refused the document)."""


class BuildWarning(MastheadError):
    """A problem that does not stop a build, unless ``--strict`` is given."""
