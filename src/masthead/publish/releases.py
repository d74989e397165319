"""Releases and the switch history: release ids, which releases were live in turn, where
``--rollback`` goes, and which releases ``--keep`` deletes. Pure decisions: no file is read
or written here."""

from __future__ import annotations

import re
import time

from ..errors import PublishError

_RELEASE_RE = re.compile(r"^(\d{8}T\d{6}Z)-([0-9a-f]{12})$")


def _release_hash(release: str | None) -> str | None:
    match = _RELEASE_RE.match(release or "")
    return match[2] if match else None


def new_release_id(short_hash: str, existing: list[str]) -> str:
    """``<UTC time>-<hash>``, later than every existing release (even if the clock went
    back), so that releases sort by name in the order they were published."""
    now = int(time.time())
    stamps = [_release_epoch(r) for r in existing if _RELEASE_RE.match(r)]
    if stamps and max(stamps) >= now:
        now = max(stamps) + 1
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}-{short_hash}"


def _release_epoch(release: str) -> int:
    import calendar

    return calendar.timegm(time.strptime(release[:16], "%Y%m%dT%H%M%SZ"))


def _releases(names: list[str]) -> list[str]:
    """Complete releases among folder names, oldest first."""
    return sorted(n for n in names if _RELEASE_RE.match(n))


# ----------------------------------------------------------------------------------------
# The switch history: which releases were live, in order, and where --rollback goes

History = list[tuple[str, str]]
"""The events of ``.masthead-history``, oldest first: ``(kind, release)``, where kind is
``publish``, ``rollback`` or ``found`` (the live release of a target that had no history
yet). ``None`` in place of a history: the target has no history file."""

_EVENTS = ("publish", "rollback", "found")


def _history_line(kind: str, release: str) -> str:
    """One line of ``.masthead-history``: ``<UTC time> <kind> <release>``."""
    return f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {kind} {release}"


def _parse_history(lines: list[str]) -> History:
    events: History = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[1] in _EVENTS and _RELEASE_RE.match(parts[2]):
            events.append((parts[1], parts[2]))
    return events  # (a line that is not an event, e.g. cut short by a full disk, is skipped)


def _new_events(history: History | None, live: str | None, kind: str, release: str) -> History:
    """The events a switch to ``release`` appends; the first switch on a target published
    before the history was kept records the release it found live, so it can come back."""
    found: History = [("found", live)] if history is None and live is not None else []
    return [*found, (kind, release)]


def _live_stack(history: History, live: str | None) -> list[str]:
    """The releases that were live, oldest first, without those rolled back from."""
    stack: list[str] = []
    for kind, release in history:
        if kind == "rollback":
            _return_to(stack, release)
        else:
            stack.append(release)
    if live is not None and stack[-1:] != [live]:  # switched by hand, or its line was lost
        if live in stack:
            _return_to(stack, live)
        else:
            stack.append(live)
    return stack


def _return_to(stack: list[str], release: str) -> None:
    while stack and stack[-1] != release:
        stack.pop()
    if not stack:  # back to a release from before the history
        stack.append(release)


def _rollback_path(releases: list[str], live: str | None, history: History | None) -> list[str]:
    """The live release, then each release ``--rollback`` would go back to in turn: the
    ones that were live before it, then (before the history began) older ones by id."""
    if live is None:
        return []
    if history is None:  # a target published before the history was kept
        return [live, *reversed([r for r in releases if r < live])]
    kept = set(releases)
    stack = [r for r in _live_stack(history, live) if r in kept]
    recorded = {r for _, r in history} | set(stack)
    older = [r for r in releases if r < stack[0] and r not in recorded]
    return [*reversed(stack), *reversed(older)]


def _to_prune(releases: list[str], live: str, keep: int, history: History | None) -> list[str]:
    """The releases beyond the ``keep`` that matter most: the live one, the ones
    ``--rollback`` would go back to, then the others (rolled back from) newest first."""
    path = _rollback_path(releases, live, history)
    others = sorted((r for r in releases if r not in path), reverse=True)
    kept = set([*path, *others][:keep])
    return [r for r in releases if r not in kept]


def _previous(
    releases: list[str], live: str | None, history: History | None, target: object
) -> str:
    if live is None:
        raise PublishError(
            f"{target} has no live release to roll back from",
            fix="publish first: masthead publish DIR --to TARGET",
        )
    path = _rollback_path(releases, live, history)
    if len(path) < 2:
        raise PublishError(
            f"{target}: no earlier release to roll back to: none of the releases that were "
            f"live before the live one ({live}) is kept",
            fix="nothing to roll back to; publish the version you want instead",
        )
    return path[1]


def _check_keep(keep: int) -> None:
    if keep < 1:
        raise PublishError(
            f"--keep {keep}: at least the live release is kept",
            fix="use --keep 2 or more (the default is 5)",
        )
