"""Subscriber list speed: CSV import, export, listing the recipients, signing tokens.

Run: python benchmarks/bench_subscribers.py [N]   (default N = 100000)
"""

from __future__ import annotations

import io
import resource
import sys
import tempfile
import time
from pathlib import Path

from masthead.content import load_publication
from masthead.scaffold import copy_demo
from masthead.store import open_store, tokens
from masthead.store import subscriber_list as subs


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_demo(Path(tmp) / "pub")
        pub = load_publication(root)
        store = open_store(pub)
        csv_path = Path(tmp) / "list.csv"
        with open(csv_path, "w", encoding="utf-8") as f:
            f.write("email,name,language\n")
            for i in range(n):
                f.write(f"reader{i}@example{i % 97}.org,Reader {i},en\n")
            f.write("reader1@example1.org,Duplicate,\nnot-an-address,Bad,\n")

        t = time.perf_counter()
        report = subs.import_csv(store, csv_path, confirmed=True)
        took = time.perf_counter() - t
        assert report.imported == n and len(report.bad) == 2
        print(f"import {n:,} rows (--confirmed): {took:.2f} s = {n / took:,.0f} rows/s")

        t = time.perf_counter()
        again = subs.import_csv(store, csv_path, confirmed=True)
        took = time.perf_counter() - t
        assert not again.imported
        print(f"re-import, all already on the list: {took:.2f} s = {n / took:,.0f} rows/s")

        t = time.perf_counter()
        out = io.StringIO()
        subs.export_csv(store, out)
        took = time.perf_counter() - t
        print(f"export {n:,} rows: {took:.2f} s = {n / took:,.0f} rows/s")

        t = time.perf_counter()
        with store.read() as conn:
            count = sum(1 for _ in conn.execute(subs.recipients_select()))
        took = time.perf_counter() - t
        print(f"select {count:,} recipients: {took:.2f} s = {count / took:,.0f} rows/s")

        t = time.perf_counter()
        for i in range(n):
            tokens.unsubscribe_url(pub, i, f"reader{i}@example.org")
            tokens.verp_address(pub, i)
        took = time.perf_counter() - t
        print(f"unsubscribe URL + VERP address: {n / took:,.0f} subscribers/s")

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS: {peak:.0f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
