"""The built site (``_site/``) as a publish reads it: whole or refused, every file with its
SHA-256, and the site's content hash."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import PublishError
from ..model import Publication
from ..site_check import site_problems

# ----------------------------------------------------------------------------------------
# The built site and its content hash


@dataclass(frozen=True)
class SiteFile:
    rel: str
    path: str
    size: int
    sha256: str


@dataclass
class Site:
    root: Path
    dirs: list[str]
    files: list[SiteFile]
    digest: str

    @property
    def short_hash(self) -> str:
        return self.digest[:12]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def built_publication(root: Path | str) -> Publication:
    """The publication at ``root``, refused when its site was never built."""
    from ..content import load_publication

    pub = load_publication(root)
    site = pub.site_dir
    if not site.is_dir() or not (site / "manifest.json").is_file():
        raise PublishError(
            "there is no built site to publish" + ("" if site.is_dir() else " (no _site/)"),
            path=site,
            fix=f"run `masthead build {pub.root}` first",
        )
    return pub


def whole_site(pub: Publication) -> Path:
    """The publication's built site, refused unless it is the whole of one build (read with
    the build lock held: a build may not swap it meanwhile)."""
    site = pub.site_dir
    problems = site_problems(site)
    if problems:
        raise PublishError(
            "the built site is not whole, so nothing was published: " + "; ".join(problems),
            path=site,
            fix=f"run `masthead build {pub.root}` (it builds a damaged site again in full), "
            "then publish",
        )
    return site


def read_site(site: Path) -> Site:
    """Every folder and file of the site with its SHA-256, and the site's content hash
    (names and contents only: rebuilding unchanged pages changes nothing)."""
    dirs: list[str] = []
    files: list[SiteFile] = []
    for rel, path, is_dir in _walk(str(site), ""):
        if is_dir:
            dirs.append(rel)
        else:
            size, digest = _hash_file(path)
            files.append(SiteFile(rel, path, size, digest))
    h = hashlib.sha256()
    for rel in dirs:
        h.update(f"d\0{rel}\n".encode())
    for f in files:
        h.update(f"f\0{f.rel}\0{f.size}\0{f.sha256}\n".encode())
    return Site(root=site, dirs=dirs, files=files, digest=h.hexdigest())


def _walk(top: str, prefix: str) -> Iterator[tuple[str, str, bool]]:
    with os.scandir(top) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        rel = f"{prefix}{entry.name}"
        if entry.is_dir():  # a symlink to a folder is published as a folder
            yield rel, entry.path, True
            yield from _walk(entry.path, rel + "/")
        elif entry.is_file():
            yield rel, entry.path, False


def _hash_file(path: str) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()
