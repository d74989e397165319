"""Stage 1 — content: read a publication folder (TOML, YAML front matter, Markdown)."""

from .loader import load_issue, load_issue_config, load_item, load_publication
from .markdown import paragraphs, parse_markdown, plain_text

__all__ = [
    "load_issue",
    "load_issue_config",
    "load_item",
    "load_publication",
    "paragraphs",
    "parse_markdown",
    "plain_text",
]
