"""How fast the editor's app answers: the password check, saving an item, the print
preview's refresh after a save, the dashboard with a few thousand subscribers.

Run: python benchmarks/bench_editor.py
"""

from __future__ import annotations

import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from starlette.testclient import TestClient

from masthead.content import load_publication
from masthead.scaffold import copy_demo
from masthead.store import open_store
from masthead.store import subscriber_list as subs
from masthead.web import create_app
from masthead.web.auth import hash_password, verify_password

ISSUE = "/admin/issues/2020-03"


def timed(fn, n: int = 5) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), max(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_demo(Path(tmp) / "demo")
        os.environ["MASTHEAD_ADMIN_PASSWORD_HASH"] = hash_password("pw")
        store = open_store(load_publication(root))
        with open(Path(tmp) / "list.csv", "w", encoding="utf-8") as f:
            f.write("email,name\n")
            for n in range(5000):
                f.write(f"reader{n}@example.org,Reader {n}\n")
        subs.import_csv(store, Path(tmp) / "list.csv", confirmed=True)
        with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
            stored = os.environ["MASTHEAD_ADMIN_PASSWORD_HASH"]
            med, _ = timed(lambda: verify_password("pw", stored), 3)
            print(f"password check (scrypt n=2^14):   median {med * 1000:6.1f} ms")
            token = re.search(r'name="csrf" value="([^"]+)"', c.get("/admin/login").text)
            c.post("/admin/login", data={"csrf": token.group(1), "password": "pw"})
            page = c.get(f"{ISSUE}/items/lead").text
            csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

            t = time.perf_counter()
            c.get(f"{ISSUE}/print.json")
            print(f"print preview, first render:      {(time.perf_counter() - t) * 1000:6.1f} ms")
            med, _ = timed(lambda: c.get(f"{ISSUE}/print.json"), 10)
            print(f"print preview poll, unchanged:    median {med * 1000:6.1f} ms")

            def save_and_refresh() -> None:
                page = c.get(f"{ISSUE}/items/lead").text
                base = re.search(r'name="hash" value="([^"]+)"', page).group(1)
                body = "More text. " * (50 + int(time.perf_counter() * 1000) % 50)
                c.post(
                    f"{ISSUE}/items/lead",
                    data={"csrf": csrf, "hash": base, "title": "Lead", "body": body},
                )
                c.get(f"{ISSUE}/print.json")

            med, worst = timed(save_and_refresh, 5)
            print(
                f"save an item + new preview:       median {med * 1000:6.1f} ms, "
                f"worst {worst * 1000:6.1f} ms"
            )
            med, _ = timed(lambda: c.get("/admin/"), 5)
            print(f"dashboard, 5,000 subscribers:     median {med * 1000:6.1f} ms")
            med, _ = timed(lambda: c.get("/admin/subscribers?q=reader42"), 5)
            print(f"subscriber search, 5,000:         median {med * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
