"""Several `masthead send --worker` processes sharing one outbox (issue 8).

Each worker is a separate process. Given different ``MASTHEAD_MACHINE`` names they act as
separate hosts: a worker cannot see another's processes, so a dead one's rows come back
only when its lease runs out, as when a whole machine dies. The suite runs these on SQLite
and, in CI's second run, on PostgreSQL (``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import itertools
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from masthead.deliver import create_send, send_state, set_paused
from masthead.deliver.outbox import book_slots
from masthead.store import outbox
from sendkit import SLUG, add_subscribers, built_template, open_pub, send_cli, wired_copy
from smtp_sink import SmtpSink

LEASE = "5"  # renewed every second: a worker stalled 4 s on a loaded machine keeps its rows


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_template(tmp_path_factory.mktemp("workers") / "pub")


def worker(root: Path, machine: str | None, *args: str):  # type: ignore[no-untyped-def]
    env = {"MASTHEAD_MACHINE": machine} if machine else {}
    return send_cli(root, "--worker", "--lease", LEASE, "--batch", "50", *args, env=env)


def claimed_by(store, prefix: str) -> set[str]:  # type: ignore[no-untyped-def]
    """Addresses of rows a worker whose mark starts with ``prefix`` holds in ``sending``."""
    with store.read() as conn:
        return set(
            conn.execute(
                select(outbox.c.email).where(
                    outbox.c.issue_slug == SLUG,
                    outbox.c.state == "sending",
                    outbox.c.claimed_by.like(prefix + "%"),
                )
            ).scalars()
        )


@pytest.mark.parametrize("separate_hosts", [True, False], ids=["hosts", "one-host"])
def test_a_killed_worker_is_taken_over_and_nobody_is_skipped(
    template: Path, tmp_path: Path, separate_hosts: bool
) -> None:
    recipients = 3000
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, recipients)
        names = ["host-a", "host-b", "host-c"] if separate_hosts else [None, None, None]
        workers = [worker(root, name) for name in names]
        victim = workers[1]
        try:
            deadline = time.monotonic() + 60
            while len(sink.messages) < recipients // 4:
                assert time.monotonic() < deadline, "the workers did not start sending"
                assert victim.poll() is None, victim.communicate()
                time.sleep(0.005)
        finally:
            victim.send_signal(signal.SIGKILL)
            victim.communicate()
        assert victim.returncode == -signal.SIGKILL
        # What the dead worker held at its death: the only rows that may arrive twice.
        mark = "host-b:" if separate_hosts else f"{victim_machine(store)}:{victim.pid}:"
        flying = claimed_by(store, mark)
        results = [w.communicate(timeout=120) for w in (workers[0], workers[2])]
        for w, (out, err) in zip((workers[0], workers[2]), results, strict=True):
            assert w.returncode == 0, out + err
        received = sink.by_recipient()
    assert set(received) == set(addresses)  # zero missing
    twice = {a for a, n in received.items() if n > 1}
    assert twice <= flying  # duplicates only among the dead worker's in-flight rows
    assert max(received.values()) <= 2
    state = send_state(store, SLUG)
    assert state.count("sent") == recipients and state.complete
    out = "".join(out for out, _ in results)
    assert "may have arrived twice" in out or not flying


def victim_machine(store) -> str:  # type: ignore[no-untyped-def]
    from masthead.deliver.outbox import this_machine

    return this_machine()


def test_workers_started_together_create_the_send_once(template: Path, tmp_path: Path) -> None:
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, 400)
        workers = [worker(root, f"host-{i}") for i in range(3)]
        outputs = [w.communicate(timeout=120) for w in workers]
        assert [w.returncode for w in workers] == [0, 0, 0], outputs
        received = sink.by_recipient()
    assert Counter(received.values()) == Counter({1: 400})
    assert set(received) == set(addresses)
    assert send_state(store, SLUG).total == 400


def test_a_paused_send_stays_paused_for_a_worker(template: Path, tmp_path: Path) -> None:
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        add_subscribers(store, 20)
        create_send(store, SLUG)
        set_paused(store, SLUG, True)
        w = worker(root, None)
        out, _ = w.communicate(timeout=60)
        assert w.returncode == 1
        assert "paused" in out
        assert sink.messages == []
    assert send_state(store, SLUG).paused


def test_the_rate_limit_holds_across_workers(template: Path, tmp_path: Path) -> None:
    """Two workers with rate_per_minute = 600 (one message every 0.1 s) together, not each:
    the 60 messages take at least 59 slots minus the grace and some jitter at the sink (5.1
    s; two workers each keeping the rate alone would take 3 s), no second holds more than
    its share, and both workers did send."""
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port, "rate_per_minute = 600\n")
        _, store, _ = open_pub(root)
        add_subscribers(store, 60)
        workers = [worker(root, f"host-{i}", "--batch", "5") for i in range(2)]
        outputs = [w.communicate(timeout=120) for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outputs
        times = sorted(m.at for m in sink.handler.messages)
    sent = [int(re.search(r"this run sent (\d+) in", out).group(1)) for out, _ in outputs]  # type: ignore[union-attr]
    assert sum(sent) == 60 and min(sent) > 0, sent  # the limit was shared, not one's alone
    assert len(times) == 60
    assert times[-1] - times[0] >= 59 * 0.1 - 0.25 - 0.5
    for i, start in enumerate(times):
        in_second = sum(1 for t in times[i:] if t < start + 1.0)
        assert in_second <= 10 + 0.25 / 0.1 + 3


def test_a_live_worker_keeps_its_claims_past_the_lease(template: Path, tmp_path: Path) -> None:
    """A worker whose claimed rows take longer to send than the lease (the rate limit paces
    50 messages over 10 s; the lease is 5 s) renews its lease: the idle second worker, which
    takes over expired claims, never gets them, so nobody is mailed twice."""
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port, "rate_per_minute = 300\n")
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, 50)
        first = worker(root, "host-a")  # --batch 50: it claims every row at once
        deadline = time.monotonic() + 60
        while not sink.messages:
            assert time.monotonic() < deadline and first.poll() is None, first.communicate()
            time.sleep(0.01)
        second = worker(root, "host-b")
        outputs = [w.communicate(timeout=120) for w in (first, second)]
        assert [first.returncode, second.returncode] == [0, 0], outputs
        received = sink.by_recipient()
    assert Counter(received.values()) == Counter({1: 50})
    assert set(received) == set(addresses)
    assert "may have arrived twice" not in outputs[1][0]  # nothing was taken over
    assert "this run sent 0 in" in outputs[1][0]


def test_booked_slots_never_overlap_between_senders(demo: Path) -> None:
    """`book_slots` from many threads at once (each its own transaction): the runs of slots
    they get are disjoint and `interval` apart."""
    from masthead.content import load_publication
    from masthead.store import open_store

    store = open_store(load_publication(demo))
    runs: list[tuple[float, int]] = []
    lock = threading.Lock()

    def book() -> None:
        for _ in range(10):
            _, first = book_slots(store, "test", 5, 0.01)
            with lock:
                runs.append((first, 5))

    threads = [threading.Thread(target=book) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs.sort()
    for (a, n), (b, _) in itertools.pairwise(runs):
        assert b >= a + n * 0.01 - 1e-6
    assert len(runs) == 40
