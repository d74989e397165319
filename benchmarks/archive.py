"""Generate publications of any size for the benchmarks (deterministic, neutral text)."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

WORDS = (
    "river valley meadow council volunteers footbridge library garden school water "
    "residents meeting report season community spring summer autumn winter plan "
    "station survey birds willow bank path rain flood street market choir seeds"
).split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def paragraph(rng: random.Random, sentences: int = 5) -> str:
    return " ".join(sentence(rng, rng.randint(8, 18)) for _ in range(sentences))


KINDS = ["article", "reprint", "excerpt", "letter", "brief"]


def write_issue(
    folder: Path, volume: int, number: int, when: date, items: int, words: int, seed: int
) -> None:
    """One issue of ``items`` items, about ``words`` words in all."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "issue.toml").write_text(
        f"volume = {volume}\nnumber = {number}\ndate = {when.isoformat()}\n"
    )
    per_item = max(words // items, 30)
    for i in range(items):
        kind = KINDS[i % len(KINDS)]
        front = [f"title: {sentence(rng, 5)[:-1]}", f"kind: {kind}", "authors: [Sam Writer]"]
        if kind in ("reprint", "excerpt"):
            front += [
                "source: The Valley Post",
                "source_url: https://valleypost.example.com/a",
                "published: 2020-01-02",
            ]
        if kind == "letter":
            front += [
                "to: [The Chair, Town Council]",
                "salutation: Dear Chair,",
                "signed: [Sincerely, A Member]",
            ]
        paras = [paragraph(rng) for _ in range(max(1, per_item // 65))]
        (folder / f"item-{i:02d}.md").write_text(
            "---\n" + "\n".join(front) + "\n---\n\n" + "\n\n".join(paras) + "\n"
        )


def generate_archive(root: Path, issues: int = 500, items: int = 10, words: int = 1500) -> Path:
    """A publication of ``issues`` monthly issues of ``items`` items each."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "masthead.toml").write_text(
        'name = "Benchmark Bulletin"\ntagline = "Generated for benchmarks"\n'
        '[publisher]\nname = "Benchmarkers"\nabout = "We measure."\n'
    )
    for n in range(issues):
        year, month = 1990 + n // 12, n % 12 + 1
        write_issue(
            root / "issues" / f"{year}-{month:02d}",
            n // 12 + 1,
            n + 1,
            date(year, month, 1),
            items,
            words,
            n,
        )
    return root
