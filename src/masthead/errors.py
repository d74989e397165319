"""Masthead's exceptions: each says what happened, where, and how to fix it.

The CLI turns any :class:`MastheadError` into one ``Error: …`` line and a non-zero exit;
nothing else is caught, so a bug still shows its traceback.
"""

from __future__ import annotations

import errno
import os
import reprlib
from pathlib import Path

EXCERPT_CHARS = 80
"""The most of an input value an error message quotes: a hostile file must not make its
error message (or the page showing it) as large as itself."""

_short_repr = reprlib.Repr()
# containers are shown a few levels and entries deep: nested lists sharing parts (as YAML
# aliases make them) would otherwise be walked in full
_short_repr.maxlevel, _short_repr.maxlist, _short_repr.maxdict = 2, 4, 4
_short_repr.maxstring = _short_repr.maxother = EXCERPT_CHARS


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` cut to at most ``limit`` characters, an ellipsis marking the cut."""
    if isinstance(value, str):
        text = repr(value[: limit + 1])  # never quote (or even copy) more than we show
    elif isinstance(value, int) and value.bit_length() > 10_000:
        # Python refuses to write out an integer of more than 4300 digits
        text = f"a number of about {int(value.bit_length() * 0.30103)} digits"
    else:
        text = _short_repr.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` itself (a key, a name) cut to at most ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


class StoreError(MastheadError):
    """The subscriber database cannot be opened or upgraded."""


class SchemaBehind(StoreError):
    """The database is at an older schema version than this Masthead, and only ``masthead
    db upgrade`` upgrades a shared database."""


class SecretMismatch(StoreError):
    """This machine's signing secret is not the one the database's links are signed with."""


class DatabaseLost(StoreError):
    """The publication's database is empty, missing or replaced, though it had one: it is
    not taken for a new list (that would mail everyone who already had an issue again)."""


class DatabaseDamaged(StoreError):
    """The database file is not a database any more, or is corrupt."""


class SubscriberError(MastheadError):
    """A subscriber command cannot be carried out (bad address, unknown subscriber…)."""


class MailError(MastheadError):
    """A mail server refused a message or could not be reached."""


class FetchError(MastheadError):
    """``masthead clip`` could not fetch a page or image (HTTP error, refused, too big…)."""


class UnsafeAddress(FetchError):
    """The address is not a public one (loopback, private, link-local, …) or not http(s)."""


class TooManyRedirects(FetchError):
    """A page redirected more times than ``masthead clip`` follows."""


class ResponseTooLarge(FetchError):
    """A page or image is larger than the size limit."""


class FetchTimeout(FetchError):
    """Fetching took longer than the overall time limit."""


class ClipError(MastheadError):
    """A page could not be clipped (no article text found, unreadable file…)."""


class EmailConfigError(MastheadError):
    """``[email]`` lacks something the email edition needs (a From address, a DKIM key…)."""


class RecipientError(MastheadError):
    """A recipient's address or per-recipient value cannot be put in a message safely."""


class SmtpError(MailError):
    """The mail server could not be reached or refused the session (not one recipient)."""


class SendError(MastheadError):
    """``masthead send`` cannot start or go on (issue not built, send paused…)."""


class PublishError(MastheadError):
    """``masthead publish`` cannot publish (site not built, target not ours, rsync failed…)."""


class BuildBusy(MastheadError):
    """Another build of the same publication holds its build lock."""


class StorageError(MastheadError):
    """The disk refused a write: it is full, read-only, or the folder is not ours to write."""


# The errors of a disk an operator can fix, each with the fix; any other OSError is a bug
# (or a fault we know nothing about) and keeps its traceback.
_DISK_FAULTS = {
    errno.ENOSPC: ("No space left on device", "free space on the disk that holds {folder} "),
    errno.EDQUOT: ("Disk quota exceeded", "free space or raise the quota for {folder} "),
    errno.EROFS: (
        "read-only file system",
        "remount the disk that holds {folder} read-write, or work on a copy on a writable disk",
    ),
    errno.EACCES: (
        "Permission denied",
        "give {user} access (e.g. `chown -R {user} {folder}`), or run as the folder's owner",
    ),
    errno.EPERM: (
        "Operation not permitted",
        "`lsattr -d {path}` shows an immutable (i) or append-only (a) flag that `chattr` "
        "removes; else give {user} write access (e.g. `chown -R {user} {folder}`)",
    ),
}


def disk_fault(
    exc: OSError,
    *,
    path: Path,
    unchanged: str,
    error: type[MastheadError] = StorageError,
) -> MastheadError | None:
    """The message for a full disk, a read-only disk or a missing permission met at ``path``
    (the file named by ``exc`` when it names one), saying what ``unchanged`` is still as it
    was; ``None`` for any other error, which stays the bug it is."""
    if exc.errno not in _DISK_FAULTS:
        return None
    what, fix = _DISK_FAULTS[exc.errno]
    where = Path(os.fsdecode(exc.filename)) if exc.filename else path
    while not where.exists() and where != where.parent:  # a file it could not make: its folder
        where = where.parent
    folder = where if where.is_dir() else where.parent
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix += f"(`df -h {folder}` shows how much is free), then run the command again"
    written_only = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
    return error(
        f"cannot write here: {what}" if written_only else what,
        path=where,
        fix=fix.format(folder=folder, path=where, user=_user()) + f"; {unchanged}",
    )


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container without a passwd entry
        return str(os.getuid())
