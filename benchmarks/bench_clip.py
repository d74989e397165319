"""Clip quality, measured: `masthead clip` against plain `trafilatura.extract()`.

For each saved page of the clip corpus (``../shared/corpora/clip`` beside the repository,
or ``--corpus DIR`` / ``MASTHEAD_CLIP_CORPUS``), clip it into a scratch publication with the
same function `masthead clip FILE` runs, read the item back as Masthead reads it (front
matter + Markdown → document tree → plain text), and score it against ``truth.json``:

- recall: the fraction of the ``with`` sentences found in the text;
- precision: with-hits / (with-hits + ``without`` hits), as the corpus README defines it;
- F1, their harmonic mean; all after normalising white space, totalled over the corpus.

The same figures for plain ``trafilatura.extract(html)`` come from the same run.

    python benchmarks/bench_clip.py [--corpus DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "clip"


@dataclass
class Score:
    found: int = 0
    wanted: int = 0
    boilerplate: int = 0

    def add(self, text: str, truth: dict) -> Score:
        text = _norm(text)
        hits = sum(_norm(s) in text for s in truth["with"])
        noise = sum(_norm(s) in text for s in truth["without"])
        self.found += hits
        self.wanted += len(truth["with"])
        self.boilerplate += noise
        return Score(hits, len(truth["with"]), noise)

    @property
    def recall(self) -> float:
        return self.found / self.wanted if self.wanted else 1.0

    @property
    def precision(self) -> float:
        hits = self.found + self.boilerplate
        return self.found / hits if hits else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _publication(root: Path) -> Path:
    (root / "issues" / "bench").mkdir(parents=True)
    (root / "masthead.toml").write_text('name = "Bench"\n', "utf-8")
    (root / "issues" / "bench" / "issue.toml").write_text(
        "volume = 1\nnumber = 1\ndate = 2024-01-01\n", "utf-8"
    )
    return root


def clipped_text(page: Path, root: Path) -> str:
    """Clip ``page`` as `masthead clip FILE` does and return the item as Masthead reads it."""
    from masthead.content import load_item, paragraphs
    from masthead.content.clip import clip

    report = clip(str(page), root, images=False)
    item = load_item(report.path, [])
    return "\n".join(paragraphs(item.body))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        default=Path(os.environ.get("MASTHEAD_CLIP_CORPUS", DEFAULT_CORPUS)),
        help="the clip corpus folder (pages/*.html and truth.json)",
    )
    args = parser.parse_args(argv)
    truth_path = args.corpus / "truth.json"
    if not truth_path.is_file():
        print(f"no corpus at {args.corpus} (set --corpus or MASTHEAD_CLIP_CORPUS)")
        return 2
    truth = json.loads(truth_path.read_text("utf-8"))

    import trafilatura

    ours, plain = Score(), Score()
    ours_time = plain_time = 0.0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = _publication(Path(tmp))
        for name in sorted(truth):
            page = args.corpus / "pages" / name
            start = time.perf_counter()
            text = clipped_text(page, root)
            ours_time += time.perf_counter() - start
            a = ours.add(text, truth[name])
            start = time.perf_counter()
            reference = trafilatura.extract(page.read_bytes()) or ""
            plain_time += time.perf_counter() - start
            b = plain.add(reference, truth[name])
            rows.append((name, a, b))

    print(f"{'page':52} {'masthead clip':>15} {'trafilatura':>13}")
    print(f"{'':52} {'with':>6} {'noise':>8} {'with':>6} {'noise':>6}")
    # with: `with` sentences found / wanted; noise: `without` sentences found
    for name, a, b in rows:
        mark = ""
        if (a.found, -a.boilerplate) > (b.found, -b.boilerplate):
            mark = "  better"
        elif (a.found, -a.boilerplate) < (b.found, -b.boilerplate):
            mark = "  worse"
        print(
            f"{name[:52]:52} {a.found:>3}/{a.wanted:<2} {a.boilerplate:>8} "
            f"{b.found:>3}/{b.wanted:<2} {b.boilerplate:>6}{mark}"
        )
    print()
    print(f"{len(rows)} pages          recall  precision     F1   seconds/page")
    for label, s, t in (("masthead clip", ours, ours_time), ("trafilatura", plain, plain_time)):
        print(
            f"{label:18} {s.recall:8.3f} {s.precision:10.3f} {s.f1:6.3f} "
            f"{t / max(len(rows), 1):10.3f}"
        )
    return 0 if ours.f1 >= plain.f1 else 1


if __name__ == "__main__":
    sys.exit(main())
