"""Regenerate the format reference in README.md from the config schema.

Run after changing a field or its docstring in src/masthead/config.py:
    python scripts/update_readme_reference.py
"""

from __future__ import annotations

import re
from pathlib import Path

from masthead.config import reference_markdown

README = Path(__file__).resolve().parents[1] / "README.md"

text = README.read_text("utf-8")
block = f"<!-- reference:start -->\n{reference_markdown()}\n<!-- reference:end -->"
text = re.sub(
    r"<!-- reference:start -->.*?<!-- reference:end -->", lambda _: block, text, flags=re.S
)
README.write_text(text, "utf-8")
print(f"updated {README}")
