"""The editor's changes to an issue folder: items, print order, images, the trash.

The folder stays the source of truth: every change is written to the same files an editor
with a text editor would write (Markdown with YAML front matter, ``issue.toml``), each
through a temporary file renamed into place, so a reader never sees half a file.

Concurrent edits: a form carries the content hash of the file it was made from
(:func:`content_hash`); :func:`save_item` refuses to write when the file has changed since
(:class:`EditConflict`, holding the other version), so neither change is silently lost.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from ..config import ItemFrontMatter, validate
from ..content.front_matter import parse_front_matter
from ..content.loader import FRONT_MATTER, MAX_ITEM_BYTES, SLUG, item_files, read_text
from ..errors import ContentError, MastheadError, excerpt

MAX_IMAGE_BYTES = 10 * 1024 * 1024
"""The largest image the editor accepts (10 MiB)."""
TRASH = ".trash"
_lock = threading.Lock()  # one writer at a time: compare-and-write must not interleave


class EditConflict(MastheadError):
    """The file changed on disk after the form was opened."""

    def __init__(self, path: Path, current: str) -> None:
        super().__init__(
            f"{path.name} was changed by someone else (another tab, or a text editor) after "
            "you opened it; your version was not saved",
            path=path,
            fix="compare the two versions below, merge them into the form, and save again",
        )
        self.current = current


class EditError(MastheadError):
    """A change the editor asked for cannot be made (bad name, bad image, bad field)."""


class NotFound(EditError):
    """The issue or item named in the address does not exist."""


@dataclass(frozen=True)
class ItemFile:
    """An item as the edit form shows it: front matter, Markdown body, the file's hash."""

    name: str
    meta: dict[str, Any]
    body: str
    hash: str
    text: str


def content_hash(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:20]


def _write_atomic(path: Path, data: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(data, "utf-8", newline="")
    tmp.replace(path)


class LinkRefused(EditError):
    """A file of an issue folder is a symbolic link (or leads outside the folder)."""


def own_file(folder: Path, path: Path) -> bool:
    """Whether ``path`` is a regular file of ``folder`` itself: not a symbolic link, and,
    with every link of its parents followed, still directly inside ``folder``. The app reads
    and writes only such files: a link could lead to the secret key or any file the server
    can read (the build refuses links the same way)."""
    try:
        if path.is_symlink() or folder.is_symlink():
            return False
        real = path.resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, a loop, too long, a NUL byte
        return False
    return real.parent == folder.resolve() and real.is_file()


def refuse_link(folder: Path, path: Path) -> None:
    """Raise :class:`LinkRefused` when ``path`` exists but is not :func:`own_file`."""
    if (path.exists() or path.is_symlink()) and not own_file(folder, path):
        raise LinkRefused(
            f"{path.name} is a symbolic link or lies outside issue folder {folder.name}/; "
            "the editor's app does not follow links",
            path=path,
            fix="replace the link by a copy of the file",
        )


def read_own_file(folder: Path, path: Path) -> bytes | None:
    """The bytes of ``path`` when it is :func:`own_file` of ``folder``, else None; opened
    without following a link, so one swapped in after the check is refused too."""
    if not own_file(folder, path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        return handle.read(MAX_IMAGE_BYTES + 1)


def item_path(folder: Path, name: str) -> Path:
    """The item file ``name`` (``lead`` or ``lead.md``) inside ``folder``, refusing anything
    that is not a plain item file name or is a link."""
    stem = name.removesuffix(".md")
    if len(stem) > 200 or not SLUG.match(stem) or "/" in stem or stem.startswith("."):
        raise EditError(
            f"{excerpt(name)} is not an item file name", fix="use letters, digits and -"
        )
    path = folder / f"{stem}.md"
    refuse_link(folder, path)
    return path


def read_item(path: Path) -> ItemFile:
    """The item as the edit form shows it, read as the build reads it (size cap, UTF-8,
    front matter without YAML aliases); a file that cannot be read so is an
    :class:`EditError` naming its line. A link is refused, never followed."""
    refuse_link(path.parent, path)
    try:
        text = read_text(path)
        match = FRONT_MATTER.match(text)
        loaded = parse_front_matter(match.group(1), path=path) if match else None
    except ContentError as exc:
        where = f"{path.name}, line {exc.line}" if exc.line else path.name
        raise EditError(f"{where}: {exc.message}", fix=exc.fix) from None
    meta = loaded if isinstance(loaded, dict) else {}
    body = text[match.end() :].lstrip("\n") if match else text
    return ItemFile(name=path.name, meta=meta, body=body, hash=content_hash(text), text=text)


def item_text(meta: dict[str, Any], body: str) -> str:
    """The file: ``---``, the front matter by ``yaml.safe_dump``, ``---``, the body."""
    clean = {k: v for k, v in meta.items() if v not in (None, "", [])}
    front = yaml.safe_dump(
        clean, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000
    )
    body = body.replace("\r\n", "\n").strip("\n")
    return f"---\n{front}---\n\n{body}\n"


def check_meta(path: Path, meta: dict[str, Any]) -> None:
    """Raise the loader's own error when the front matter would not load."""
    clean = {k: v for k, v in meta.items() if v not in (None, "", [])}
    text = yaml.safe_dump(clean, sort_keys=False, allow_unicode=True)
    validate(ItemFrontMatter, clean, path=path, text=text, sep=":")


def _check_readable(path: Path, text: str) -> None:
    """Refuse to save a file the build would refuse to read (too large, front matter too
    large): the editor hears it now, not at the next build."""
    size = len(text.encode("utf-8"))
    if size > MAX_ITEM_BYTES:
        raise EditError(
            f"the item would be {size / 1024 / 1024:.1f} MB, more than the "
            f"{MAX_ITEM_BYTES // 1024 // 1024} MB an item may hold",
            fix="split it into several items",
        )
    match = FRONT_MATTER.match(text)
    try:
        parse_front_matter(match.group(1) if match else "", path=path)
    except ContentError as exc:
        raise EditError(exc.message, fix=exc.fix) from None


def save_item(path: Path, meta: dict[str, Any], body: str, base_hash: str) -> str:
    """Write the item if the file is still the one with ``base_hash``; return the new hash.

    Raises :class:`EditConflict` (with the file's current text) when it changed since."""
    check_meta(path, meta)
    text = item_text(meta, body)
    _check_readable(path, text)
    with _lock:
        current = path.read_text("utf-8") if path.exists() else ""
        if content_hash(current) != base_hash:
            raise EditConflict(path, current)
        _write_atomic(path, text)
    return content_hash(text)


# ---- print order (issue.toml `items`) ---------------------------------------------------


def _toml(folder: Path) -> Any:
    import tomlkit

    path = folder / "issue.toml"
    refuse_link(folder, path)
    try:
        return tomlkit.parse(read_text(path, limit=1024 * 1024))
    except ContentError as exc:
        raise EditError(exc.message, fix=exc.fix) from None
    except ValueError:  # tomlkit's ParseError, or a number of more digits than Python reads
        raise EditError(
            "issue.toml does not load, so the print order cannot be changed",
            fix="the issue's page says what is wrong with it; correct that first",
        ) from None


def print_order(folder: Path) -> list[str]:
    """The item file names in print order (``items``, else file-name order; file-name
    order too while ``issue.toml`` does not load, which the issue's page reports)."""
    names = [p.name for p in item_files(folder)]
    try:
        items = _toml(folder).get("items")
    except EditError:
        return names
    if not isinstance(items, list) or not all(isinstance(n, str) for n in items):
        return names
    order = [n if n.endswith(".md") else f"{n}.md" for n in items]
    return [n for n in order if n in names] + [n for n in names if n not in order]


def write_order(folder: Path, names: list[str]) -> None:
    """Save ``names`` as ``items`` in ``issue.toml``, keeping every other key and comment.

    ``names`` must be exactly the issue's item files (no more, no fewer)."""
    import tomlkit

    present = {p.name for p in item_files(folder)}
    names = [n if n.endswith(".md") else f"{n}.md" for n in names]
    if sorted(names) != sorted(present):
        raise EditError(
            "the new order does not list the issue's items exactly",
            path=folder / "issue.toml",
            fix="reload the page: items were added or removed meanwhile",
        )
    with _lock:
        doc = _toml(folder)
        array = tomlkit.array()
        array.extend(names)
        if len(names) > 3:
            array.multiline(True)
        doc["items"] = array
        _write_atomic(folder / "issue.toml", tomlkit.dumps(doc))


def move(folder: Path, name: str, offset: int) -> list[str]:
    """Move item ``name`` up (-1) or down (+1) in the print order."""
    order = print_order(folder)
    name = item_path(folder, name).name
    if name not in order:
        raise EditError(f"{name} is not an item of this issue")
    i = order.index(name)
    j = max(0, min(len(order) - 1, i + offset))
    order.insert(j, order.pop(i))
    write_order(folder, order)
    return order


# ---- new item, delete, undo -------------------------------------------------------------


def slugify(title: str) -> str:
    from ..content.clip import slugify as clip_slugify

    return clip_slugify(title, limit=50)


def new_item(folder: Path, title: str, kind: str, after: str | None = None) -> str:
    """Create an item file from a title and kind; add it to the print order (at the end, or
    after ``after``). Returns its file name."""
    meta: dict[str, Any] = {"title": title.strip(), "kind": kind, "authors": []}
    base = slugify(title) or "item"
    with _lock:
        taken = {p.stem for p in folder.iterdir()}
        stem, n = base, 2
        while stem in taken:
            stem, n = f"{base}-{n}", n + 1
        path = folder / f"{stem}.md"
        check_meta(path, meta)
        with path.open("x", encoding="utf-8") as out:
            out.write(item_text(meta, ""))
    order = [n for n in print_order(folder) if n != path.name]
    at = order.index(after) + 1 if after in order else len(order)
    order.insert(at, path.name)
    write_order(folder, order)
    return path.name


def delete_item(folder: Path, name: str) -> str:
    """Move the item (and its translations) to ``.trash/``; returns the id :func:`restore`
    takes. The print order remembers nothing of it until it is restored."""
    path = item_path(folder, name)
    if not path.is_file():
        raise EditError(f"{path.name} does not exist (already deleted?)")
    order = print_order(folder)
    position = order.index(path.name) if path.name in order else len(order)
    remaining = [n for n in order if n != path.name]
    if not remaining:
        raise EditError(
            "an issue needs at least one item", fix="add another item before deleting this one"
        )
    trash_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{position}-{path.stem}"
    target = folder / TRASH / trash_id
    try:
        target.mkdir(parents=True)
    except FileExistsError:
        raise EditError(
            f"{path.name} was deleted a moment ago already", fix="wait a second and try again"
        ) from None
    with _lock:
        for f in [path, *folder.glob(f"{path.stem}.*.md")]:
            shutil.move(str(f), target / f.name)
    write_order(folder, remaining)
    return trash_id


def restore(folder: Path, trash_id: str) -> str:
    """Put a deleted item back where it was in the print order; returns its file name."""
    if len(trash_id) > 240 or not re.fullmatch(r"\d{8}-\d{6}-\d{1,6}-[A-Za-z0-9_-]+", trash_id):
        raise EditError("no such deleted item")
    trash = folder / TRASH
    source = trash / trash_id
    if trash.is_symlink() or source.is_symlink() or not source.is_dir():
        raise EditError("no such deleted item (restored already?)")
    if any(f.is_symlink() or not f.is_file() for f in source.iterdir()):
        raise LinkRefused(
            f"{TRASH}/{trash_id} holds a link or a folder; the editor's app does not follow links",
            path=source,
            fix="restore the files by hand",
        )
    position = int(trash_id.split("-")[2])
    stem = trash_id.split("-", 3)[3]
    name = f"{stem}.md"
    if (folder / name).exists():
        raise EditError(
            f"{name} exists again", fix="rename the new item first, then restore this one"
        )
    with _lock:
        for f in source.iterdir():
            shutil.move(str(f), folder / f.name)
        source.rmdir()
    order = [n for n in print_order(folder) if n != name]
    order.insert(min(position, len(order)), name)
    write_order(folder, order)
    return name


# ---- images -----------------------------------------------------------------------------

IMAGE_TYPES = {
    b"\x89PNG\r\n\x1a\n": "png",
    b"\xff\xd8\xff": "jpg",
    b"GIF87a": "gif",
    b"GIF89a": "gif",
}


def image_type(data: bytes) -> str | None:
    """The image's type from its first bytes (never from its name): png, jpg, gif, webp."""
    for magic, ext in IMAGE_TYPES.items():
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def save_image(folder: Path, name: str, data: bytes, alt: str, caption: str, base_hash: str) -> str:
    """Store an uploaded image beside item ``name`` and make it the item's lead image
    (``image``, ``image_alt``, ``caption``). Returns the item's new hash."""
    path = item_path(folder, name)
    if not alt.strip():
        raise EditError(
            "an image needs alternative text",
            fix="describe what it shows for readers who cannot see it",
        )
    if len(data) > MAX_IMAGE_BYTES:
        raise EditError(
            f"the image is {len(data) // 1024 // 1024} MiB; the limit is "
            f"{MAX_IMAGE_BYTES // 1024 // 1024} MiB",
            fix="make it smaller (1500 pixels wide is plenty for print and web)",
        )
    ext = image_type(data)
    if ext is None:
        raise EditError(
            "the file is not a PNG, JPEG, GIF or WebP image", fix="export it as PNG or JPEG"
        )
    item = read_item(path)
    if item.hash != base_hash:
        raise EditConflict(path, item.text)
    stem, n = f"{path.stem}-image", 2
    while any(folder.glob(f"{stem}.*")):
        stem, n = f"{path.stem}-image-{n}", n + 1
    image = folder / f"{stem}.{ext}"
    with image.open("xb") as out:
        out.write(data)
    meta = dict(item.meta)
    meta.update(image=image.name, image_alt=alt.strip(), caption=caption.strip() or None)
    return save_item(path, meta, item.body, base_hash)


def form_meta(fields: dict[str, str], kind_default: str = "article") -> dict[str, Any]:
    """Front matter from the edit form's fields (lists one per line, dates ISO)."""

    def lines(key: str) -> list[str]:
        return [s.strip() for s in fields.get(key, "").splitlines() if s.strip()]

    def text(key: str) -> str | None:
        value = fields.get(key, "").strip()
        return value or None

    published = text("published")
    meta: dict[str, Any] = {
        "title": (fields.get("title") or "").strip(),
        "kind": text("kind") or kind_default,
        "authors": lines("authors"),
        "source": text("source"),
        "source_url": text("source_url"),
        "published": _date(published) if published else None,
        "summary": text("summary"),
        "image": text("image"),
        "image_alt": text("image_alt"),
        "caption": text("caption"),
        "to": lines("to"),
        "salutation": text("salutation"),
        "signed": lines("signed"),
    }
    return meta


def _date(value: str) -> date | str:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return value  # validation names the field and says what a date looks like
