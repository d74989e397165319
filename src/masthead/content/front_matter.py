"""An item's YAML front matter, read so that no file can make reading it costly.

Front matter is a handful of ``key: value`` lines, so YAML's power is refused before
anything is built: anchors, aliases and merge keys (``&a``, ``*a``, ``<<``), with which
400 bytes expand into gigabytes wherever the value is printed or copied, and nesting
deeper than any real front matter. The check walks libyaml's token stream (the same C
parser that then builds the values), so it costs one fast pass and never expands a thing.

Values YAML would turn into Python objects that cannot exist are kept as their text for
the schema to judge with the file's line: a timestamp such as ``2020-13-45`` (not a date)
and an integer of more digits than Python converts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import ContentError, shorten

MAX_FRONT_MATTER_BYTES = 64 * 1024
"""Front matter larger than this is refused: real front matter is a few hundred bytes."""
MAX_NESTING = 8
"""Lists or tables nested deeper than this are refused (real front matter nests 2 deep)."""

# libyaml's parser when PyYAML was built with it (it is much faster); the Python one else
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_OPENS = (
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.FlowSequenceStartToken,
)
_CLOSES = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
_NO_ALIASES_FIX = "write each value out in full where it is used"


class _FrontMatterLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader, keeping as text the values that have no Python form."""


def _timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    # a date is judged by the schema, which names the key and line; YAML's own
    # constructor would raise a bare ValueError for 2020-13-45
    return loader.construct_scalar(node)


def _integer(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        return loader.construct_scalar(node)


_FrontMatterLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)
_FrontMatterLoader.add_constructor("tag:yaml.org,2002:int", _integer)


def _file_line(mark: Any, first_line: int) -> int | None:
    return mark.line + first_line if mark is not None else None


def _refuse_costly_constructs(source: str, path: Path, first_line: int) -> None:
    """Raise on an anchor, alias, merge key or deep nesting, before any value is built."""
    depth = 0
    after_key = False
    for token in yaml.scan(source, Loader=_BaseLoader):
        line = _file_line(token.start_mark, first_line)
        merge_key = after_key and isinstance(token, yaml.ScalarToken) and token.value == "<<"
        merge_tag = isinstance(token, yaml.TagToken) and token.value[1] == "merge"
        if isinstance(token, yaml.AnchorToken | yaml.AliasToken) or merge_key or merge_tag:
            raise ContentError(
                f"YAML anchors and aliases are not allowed in front matter: line {line}",
                path=path,
                line=line,
                fix=_NO_ALIASES_FIX,
            )
        if isinstance(token, _OPENS):
            depth += 1
            if depth > MAX_NESTING:
                raise ContentError(
                    f"the front matter nests lists or tables more than {MAX_NESTING} deep",
                    path=path,
                    line=line,
                    fix="front matter is `key: value` lines; a value is text or a list of text",
                )
        elif isinstance(token, _CLOSES):
            depth -= 1
        after_key = isinstance(token, yaml.KeyToken)


def parse_front_matter(source: str, *, path: Path, first_line: int = 2) -> Any:
    """The value of the front matter ``source`` (the text between the ``---`` lines),
    whose first line is line ``first_line`` of ``path``. Raises :class:`ContentError`
    naming the file and line for YAML that is malformed or refused."""
    size = len(source.encode("utf-8"))
    if size > MAX_FRONT_MATTER_BYTES:
        raise ContentError(
            f"the front matter is {size // 1024} KB, more than the "
            f"{MAX_FRONT_MATTER_BYTES // 1024} KB it may hold",
            path=path,
            line=first_line - 1,
            fix="move long text into the body, below the closing `---` line",
        )
    try:
        _refuse_costly_constructs(source, path, first_line)
        return yaml.load(source, Loader=_FrontMatterLoader)
    except yaml.YAMLError as exc:
        # where the broken construct began (an unclosed [ or quote) is where to look
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        problem = shorten(getattr(exc, "problem", None) or str(exc), 200)
        raise ContentError(
            f"the front matter is not valid YAML: {problem}",
            path=path,
            line=_file_line(mark, first_line),
            fix="write one `key: value` per line; quote a value that holds a colon",
        ) from None
