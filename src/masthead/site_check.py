"""Is ``_site/`` the whole of one build? The build's record, and the check of it.

The build writes ``_site/.masthead-build.json`` last, just before the site goes live: every
file it wrote with its size, and the SHA-256 of ``manifest.json``. A site without the record
was not finished by a build (or was made by an older Masthead); a file missing or of another
size, or a changed manifest, means the site was damaged after it was built. Checking costs
one ``stat`` a file, so the build checks it on every run and ``masthead publish`` before it
puts a site live.

This module reads and writes files only: ``masthead publish`` imports it without the
renderers.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

STAMP = ".masthead-build.json"
MANIFEST = "manifest.json"
_FORMAT = 1


def write_stamp(site: Path, generator: str) -> str:
    """Record the site as built whole: written into the staging folder after every other
    file (nothing in it changes between builds that change no file: a rebuild of the same
    site publishes nothing new). Returns the record's digest, which the build state keeps
    to know the site it describes."""
    stamp = site / STAMP
    record = {
        "format": _FORMAT,
        "generator": generator,
        "manifest_sha256": hashlib.sha256((site / MANIFEST).read_bytes()).hexdigest(),
        "files": dict(sorted(_sizes(str(site), ""))),
    }
    data = json.dumps(record, separators=(",", ":")).encode()
    stamp.unlink(missing_ok=True)  # (a hard link to the live site's record: never in place)
    stamp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def stamp_digest(site: Path) -> str | None:
    """The digest of the site's record, as :func:`write_stamp` returned it."""
    try:
        return hashlib.sha256((site / STAMP).read_bytes()).hexdigest()
    except OSError:
        return None


def _sizes(top: str, prefix: str) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    with os.scandir(top) as entries:
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                found.extend(_sizes(entry.path, rel + "/"))
            elif rel != STAMP:
                found.append((rel, entry.stat(follow_symlinks=False).st_size))
    return found


def site_problems(site: Path, *, most: int = 5) -> list[str]:
    """What keeps ``site`` from being the whole of one build (at most ``most`` of the
    missing files named); an empty list for a whole site."""
    manifest, problems = _read_manifest(site)
    if manifest is None:
        return problems
    if not (site / "index.html").is_file():
        problems.append("index.html is missing")
    missing = sorted(p for p in named_files(manifest) if not (site / p).is_file())
    problems += [f"{p} is missing (manifest.json names it)" for p in missing[:most]]
    record = _read_stamp(site)
    if record is None:
        problems.append(
            f"{STAMP} is missing or unreadable: no build finished this site "
            "(or an older Masthead built it)"
        )
        return problems
    digest = hashlib.sha256((site / MANIFEST).read_bytes()).hexdigest()
    if record.get("manifest_sha256") != digest:
        problems.append("manifest.json is not the one the build wrote")
    problems += _damaged_files(site, record.get("files", {}), skip=set(missing), most=most)
    return problems


def _read_manifest(site: Path) -> tuple[dict[str, Any] | None, list[str]]:
    path = site / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, ["manifest.json is missing"]
    if not data:
        return None, ["manifest.json is empty (0 bytes)"]
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        return None, [f"manifest.json is cut short or damaged ({exc})"]
    if not isinstance(manifest, dict) or not isinstance(manifest.get("issues"), list):
        return None, ["manifest.json holds no list of issues"]
    return manifest, []


def _read_stamp(site: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((site / STAMP).read_bytes())
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and isinstance(record.get("files"), dict)
    return record if ok and record.get("format") == _FORMAT else None


def _damaged_files(site: Path, files: dict[str, Any], *, skip: set[str], most: int) -> list[str]:
    missing, resized = 0, []
    named: list[str] = []
    for rel, size in files.items():
        if rel in skip:
            continue
        try:
            actual = os.stat(site / rel).st_size
        except OSError:
            missing += 1
            if len(named) < most:
                named.append(rel)
            continue
        if actual != size:
            resized.append(f"{rel} is {actual} bytes, the build wrote {size}")
    problems = [f"{rel} is missing" for rel in named]
    if missing > len(named):
        problems.append(f"… and {missing - len(named)} more files are missing")
    return problems + resized[:most]


def named_files(node: Any) -> set[str]:
    """Every file ``manifest.json`` names (``pdf``, ``html``, ``email``), at any depth."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("pdf", "html", "email") and isinstance(value, str):
                found.add(value)
            else:
                found |= named_files(value)
    elif isinstance(node, list):
        for value in node:
            found |= named_files(value)
    return found


__all__ = ["STAMP", "named_files", "site_problems", "stamp_digest", "write_stamp"]
