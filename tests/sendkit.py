"""Helpers for the sending tests: a small built publication wired to a test SMTP sink, and
subscribers in bulk."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import make_publication
from masthead.build import build
from masthead.content import load_issue, load_publication
from masthead.deliver import SendPolicy
from masthead.model import Issue, Publication
from masthead.store import Store, open_store, subscribers, utcnow

SLUG = "2020-03"
ITEM = """---
title: Spring notes
kind: article
authors: ["Ada Writer"]
summary: "What happens on the river this spring."
---

The river is high this spring, and the footbridge is closed until the inspection.

- Clean-up on Saturday
- Choir on Tuesday
"""

FAST_RETRIES = SendPolicy(retry_base=0.01, retry_cap=0.05, commit_every=0.05, concurrency=3)


def built_template(folder: Path) -> Path:
    """A small publication with one issue, built (the email links to its editions)."""
    root = make_publication(folder, items={"notes.md": ITEM})
    build(root)
    return root


def wired_copy(template: Path, dest: Path, port: int, extra_smtp: str = "") -> Path:
    """A copy of ``template`` whose [email]/[smtp] point at a sink on ``port``."""
    root = Path(shutil.copytree(template, dest, symlinks=True))
    toml = root / "masthead.toml"
    # drop any [email] / [smtp] table (up to the next table), keep the rest
    text = re.sub(r"(?m)^\[(email|smtp)\]\n(?:(?!\[).*\n?)*", "", toml.read_text("utf-8"))
    text += (
        '\n[email]\nfrom = "Test Bulletin <news@example.org>"\nreply_to = "editor@example.org"\n'
        f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nconcurrency = 3\n{extra_smtp}'
    )
    toml.write_text(text, "utf-8")
    return root


def open_pub(root: Path) -> tuple[Publication, Store, Issue]:
    pub = load_publication(root)
    return pub, open_store(pub), load_issue(pub, SLUG)


def add_subscribers(
    store: Store, n: int, *, names: dict[int, str] | None = None, domains: int = 5
) -> list[str]:
    """``n`` active subscribers ``reader<i>@example<i % domains>.org``; their addresses."""
    now = utcnow()
    rows = [
        {
            "email": f"reader{i}@example{i % domains}.org",
            "email_key": f"reader{i}@example{i % domains}.org",
            "name": (names or {}).get(i, f"Reader {i}"),
            "status": "active",
            "created_at": now,
            "updated_at": now,
        }
        for i in range(n)
    ]
    with store.begin() as conn:
        conn.execute(subscribers.insert(), rows)
    return [r["email"] for r in rows]


def send_cli(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``masthead send ROOT --issue 2020-03 --yes -q ARGS`` as a child process."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from masthead.cli import main; main()",
            "send",
            str(root),
            "--issue",
            SLUG,
            "--yes",
            "-q",
            "--retry-base",
            "0.01",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


# The headers of an issue's email, exactly: a cleaned name or subject adds none.
EXPECTED_HEADERS = [
    "From",
    "Reply-To",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
]
