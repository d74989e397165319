"""The email edition: the document tree → a MIME message (HTML with inlined CSS + text).

Stages: :mod:`.layout` (what the email shows, as data) → :mod:`.to_html` and
:mod:`.to_text` (the two alternatives) → :mod:`.message` (headers through Python's ``email``
API, a template personalised per recipient by byte substitution, DKIM).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...model import Issue, Publication
from .message import MessageTemplate, Recipient, build_template, preview_message

__all__ = [
    "MessageTemplate",
    "Recipient",
    "build_template",
    "preview_message",
    "render_email_preview",
]


def render_email_preview(
    pub: Publication, issue: Issue, entry: dict[str, Any], out: Path
) -> list[str]:
    """The build hook: ``<slug>/email.eml`` for a placeholder reader; adds ``email`` to the
    issue's manifest entry."""
    from ...build import write_file

    pdf_path = entry.get("pdf")
    pdf_bytes = None
    if pdf_path and pub.config.email.attach_pdf and (out / pdf_path).is_file():
        pdf_bytes = (out / pdf_path).read_bytes()
    name = f"{issue.lang}/{issue.slug}/email.eml" if issue.lang else f"{issue.slug}/email.eml"
    write_file(out / name, preview_message(pub, issue, pdf_path=pdf_path, pdf_bytes=pdf_bytes))
    entry["email"] = name
    return []
