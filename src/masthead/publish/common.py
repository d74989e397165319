"""What every publish target shares: the target's layout, the report of a publish, and
where a target is (a folder here or ``[user@]host:/path`` over ssh)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PublishError
from .built_site import Site
from .releases import _release_hash

MARKER = ".masthead-publish"
CURRENT = "current"
RELEASES = "releases"
FILELISTS = "filelists"
PARTIAL = ".partial-"
HISTORY = ".masthead-history"
LOCK = ".masthead-publish.lock"
DEFAULT_KEEP = 5
RSH_ENV = "MASTHEAD_RSH"

_MARKER_TEXT = (
    '{"masthead_publish": 1, "about": "a masthead publish target: releases/ holds the '
    'published versions of the site, current the live one; do not edit by hand"}\n'
)

Progress = Callable[[int, int], None]
"""Called as ``progress(files_done, files_total)`` while a local release is written."""


# ----------------------------------------------------------------------------------------
# What a publish did


@dataclass
class PublishReport:
    """What :func:`publish` or :func:`rollback` did (or, with ``dry_run``, would do)."""

    target: str
    release: str
    """The live release after the command (the one that would be live, for a dry run)."""
    previous: str | None = None
    """The release that was live before."""
    noop: bool = False
    dry_run: bool = False
    rolled_back: bool = False
    files: int = 0
    copied: int = 0
    linked: int = 0
    bytes_total: int = 0
    bytes_copied: int = 0
    pruned: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def live_path(self) -> str:
        """Where the web server's root points: ``TARGET/current``."""
        return f"{self.target.rstrip('/')}/{CURRENT}"


# ----------------------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class LocalTarget:
    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class RemoteTarget:
    host: str
    """``host`` or ``user@host`` as ssh takes it (IPv6 addresses without brackets)."""
    path: str
    rsync_host: str
    """The host as rsync writes it (IPv6 addresses in brackets)."""

    def __str__(self) -> str:
        return f"{self.rsync_host}:{self.path}"


_REMOTE_RE = re.compile(r"^(?P<user>[^@/:\[]+@)?(?P<host>\[[^\]/]+\]|[^/:\[@]+):(?P<path>.*)$")


def parse_target(text: str) -> LocalTarget | RemoteTarget:
    """``/srv/bulletin`` (a folder here) or ``[user@]host:/srv/bulletin`` (over ssh), as
    rsync reads them: a colon before the first slash means a remote host."""
    if text.startswith("rsync://") or re.match(r"^[^/\[\]]+::", text):
        raise PublishError(
            f"{text}: rsync daemon targets are not supported (the live version is switched "
            "with a command run over ssh)",
            fix="use an ssh target, user@host:/path, or a mounted folder",
        )
    match = _REMOTE_RE.match(text)
    if not match:
        return LocalTarget(Path(text))
    path = match["path"]
    if not path.strip("/"):
        raise PublishError(
            f"{text}: give the folder on the host, e.g. {match['host']}:/srv/bulletin",
            fix="name the remote folder the web server's root lives in",
        )
    if path.startswith("-"):
        path = "./" + path  # never read as an option by the remote commands
    user = match["user"] or ""
    host = match["host"]
    target = RemoteTarget(host=user + host.strip("[]"), path=path, rsync_host=user + host)
    _refuse_option_host(text, target)
    return target


def _refuse_option_host(text: str, target: RemoteTarget) -> None:
    """A host such as ``-oProxyCommand=…`` would be read by ssh and rsync as an option
    (and run a command here): no host name or address starts with ``-``."""
    if target.host.startswith("-") or target.rsync_host.startswith("-"):
        raise PublishError(
            f"{text}: the host {target.host!r} starts with '-': ssh and rsync "
            "would read it as an option, not a host",
            fix="give the host's name or address, e.g. deploy@web1.example.org:/srv/bulletin "
            f"(a local folder whose name holds a colon: ./{text})",
        )


def _start_report(site: Site, target: str, live: str | None) -> PublishReport:
    """The report of a publish before it writes anything: a no-op when the live release
    already holds the site."""
    report = PublishReport(target=target, release=live or "", previous=live)
    report.files, report.bytes_total = len(site.files), site.size
    report.noop = live is not None and _release_hash(live) == site.short_hash
    return report
