"""Publish the built site (``_site/``) to a static host, switching the live version atomically.

A publish target is a folder (here, or on another machine reached over ssh + rsync):

::

    TARGET/
      .masthead-publish        marks the folder as a target (nothing else is ever clobbered)
      current -> releases/<id> the live release: the web server's root is TARGET/current
      releases/<id>/           one complete copy of _site/ per publish, never changed after
      releases/.partial-<id>/  a release being written (removed by the next publish)
      filelists/<id>.json      each release's files and their SHA-256 (local targets only)
      .masthead-history        one line per switch of current, oldest first (append-only)
      .masthead-publish.lock/  held by a publish over ssh while it writes (removed at the end)

:func:`publish` reads like the steps it takes:

1. check that ``_site/`` is the whole of one build (:mod:`masthead.site_check`: the build's
   record, every file it lists, every file ``manifest.json`` names, ``index.html``), else
   publish nothing; read ``_site/``: every file and its SHA-256, and the site's content hash;
2. if the live release has the same content hash, stop: nothing to publish;
3. write the new release under ``releases/.partial-<id>/``: files unchanged since the live
   release are hard links to it, the rest are copied (a remote target: ``rsync
   --link-dest``); the partial folder is renamed to ``releases/<id>`` once complete;
4. switch ``current`` in one ``rename(2)`` of a new symlink over the old one, so a web
   server never sees a half-published site (a request is served from one release or the
   other);
5. record the switch in ``.masthead-history``;
6. delete the releases beyond the ``keep`` that matter most: the live one, then the ones
   ``--rollback`` would go back to (the releases that were live before it, in turn).

``--rollback`` goes back along the history: to the release that was live before the live
one became live, never to one that was rolled back from (a known-bad release).

A release id is ``<UTC time>-<12 hex digits of the content hash>``: ids sort by time, and
the hash tells whether the live release already holds what ``_site/`` holds.

This package reads the built site only: it never imports the subscriber store.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..build_lock import Waiting, build_lock
from ..errors import PublishError, disk_fault
from .built_site import Site, SiteFile, built_publication, read_site, whole_site
from .common import (
    CURRENT,
    DEFAULT_KEEP,
    FILELISTS,
    HISTORY,
    LOCK,
    MARKER,
    PARTIAL,
    RELEASES,
    RSH_ENV,
    LocalTarget,
    Progress,
    PublishReport,
    RemoteTarget,
    parse_target,
)
from .local import _publish_local, _rollback_local, switch_current
from .releases import History, _check_keep, new_release_id
from .remote import _publish_remote, _rollback_remote


def _resolve_rsh(rsh: str | None) -> str:
    return rsh or os.environ.get(RSH_ENV) or "ssh"


# ----------------------------------------------------------------------------------------
# The commands


def publish(
    root: Path | str,
    to: str | Path,
    *,
    keep: int = DEFAULT_KEEP,
    dry_run: bool = False,
    rsh: str | None = None,
    progress: Progress | None = None,
    on_wait: Waiting | None = None,
) -> PublishReport:
    """Publish the built site of the publication at ``root`` to ``to`` (a folder, or
    ``[user@]host:/path`` over ssh), switching the live version atomically; keep the last
    ``keep`` releases. ``rsh`` (or ``MASTHEAD_RSH``) replaces ``ssh`` for remote targets.

    A build swaps ``_site/`` in one step; a publish reading it meanwhile would mix the two
    sites (or find the old one's files deleted under it). So a publish holds the build lock,
    shared (publishes to several hosts run side by side): it waits for a running build
    (``on_wait`` is told so), and a build waits for it."""
    started = time.perf_counter()
    _check_keep(keep)
    pub = built_publication(root)
    target = parse_target(str(to))
    if isinstance(target, LocalTarget):
        _refuse_inside_site(target.path, pub.site_dir)
    with (
        _disk_faults(pub.root, target),
        build_lock(pub.state_dir, role="publish", on_wait=on_wait),
    ):
        site = read_site(whole_site(pub))
        if isinstance(target, LocalTarget):
            with _disk_faults(target.path, target):
                report = _publish_local(site, target, keep=keep, dry_run=dry_run, progress=progress)
        else:
            rsh = _resolve_rsh(rsh)
            report = _publish_remote(site, target, keep=keep, dry_run=dry_run, rsh=rsh)
    report.seconds = time.perf_counter() - started
    return report


def rollback(to: str | Path, *, dry_run: bool = False, rsh: str | None = None) -> PublishReport:
    """Switch ``current`` back to the release published before the live one."""
    started = time.perf_counter()
    target = parse_target(str(to))
    if isinstance(target, LocalTarget):
        with _disk_faults(target.path, target):
            report = _rollback_local(target, dry_run=dry_run)
    else:
        report = _rollback_remote(target, dry_run=dry_run, rsh=_resolve_rsh(rsh))
    report.seconds = time.perf_counter() - started
    return report


@contextlib.contextmanager
def _disk_faults(path: Path, target: LocalTarget | RemoteTarget) -> Iterator[None]:
    """A full disk, a read-only one or a missing permission here is a message naming the
    path (the release being written is removed first: the live one was never touched)."""
    try:
        yield
    except OSError as exc:
        fault = disk_fault(
            exc,
            path=path,
            unchanged=f"the live release of {target} is as it was",
            error=PublishError,
        )
        if fault is None:
            raise
        raise fault from None


def _refuse_inside_site(target: Path, site: Path) -> None:
    resolved, site = target.resolve(), site.resolve()
    if resolved == site or site in resolved.parents:
        raise PublishError(
            "the target is inside the built site: each publish would publish the last one",
            path=target,
            fix="publish to a folder outside _site/, e.g. /srv/bulletin",
        )


# The public names of masthead.publish from when it was one module: all still import from here.
__all__ = [
    "CURRENT",
    "DEFAULT_KEEP",
    "FILELISTS",
    "HISTORY",
    "LOCK",
    "MARKER",
    "PARTIAL",
    "RELEASES",
    "RSH_ENV",
    "History",
    "LocalTarget",
    "Progress",
    "PublishReport",
    "RemoteTarget",
    "Site",
    "SiteFile",
    "built_publication",
    "new_release_id",
    "parse_target",
    "publish",
    "read_site",
    "rollback",
    "switch_current",
    "whole_site",
]
