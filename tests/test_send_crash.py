"""A sender killed with SIGKILL at random moments and started again: nobody is skipped, and
only messages in flight at a kill (rows left in ``sending``) may arrive twice."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from masthead.deliver import create_send
from masthead.store import outbox
from sendkit import SLUG, add_subscribers, built_template, open_pub, send_cli, wired_copy
from smtp_sink import SmtpSink

RECIPIENTS = 5000  # as in the issue
KILLS = 2
CONCURRENCY = 3  # [smtp] concurrency of wired_copy


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_template(tmp_path_factory.mktemp("crash") / "pub")


def in_flight(store) -> set[str]:  # type: ignore[no-untyped-def]
    with store.read() as conn:
        return set(
            conn.execute(
                select(outbox.c.email).where(
                    outbox.c.issue_slug == SLUG, outbox.c.state == "sending"
                )
            ).scalars()
        )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_sender_resumes_without_loss(template: Path, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    with SmtpSink() as sink:
        root = wired_copy(template, tmp_path / "pub", sink.port)
        _, store, _ = open_pub(root)
        addresses = add_subscribers(store, RECIPIENTS)
        create_send(store, SLUG)
        flying: set[str] = set()
        kills = 0
        for _ in range(KILLS):
            sender = send_cli(root)
            try:
                # wait until it is sending (or at a random moment before), then kill it
                target = rng.randint(0, RECIPIENTS * 3 // 4)
                deadline = time.monotonic() + 60
                while len(sink.messages) < target and sender.poll() is None:
                    assert time.monotonic() < deadline
                    time.sleep(0.005)
                time.sleep(rng.random() * 0.05)
            finally:
                sender.send_signal(signal.SIGKILL)
                sender.communicate()
            if sender.returncode == -signal.SIGKILL:
                kills += 1
            flying |= in_flight(store)
        assert kills >= 1
        final = send_cli(root)
        out, err = final.communicate(timeout=120)
        assert final.returncode == 0, out + err
        received = sink.by_recipient()
    assert set(received) == set(addresses)  # nobody is skipped
    twice = {a for a, n in received.items() if n > 1}
    assert twice <= flying  # duplicates only where a row was in flight at a kill
    # ... and no more than were on the wire: one message per connection (issue 14, point 4:
    # answers were recorded up to ~600 messages behind, and a kill resent them all)
    assert len(twice) <= CONCURRENCY * kills, (len(twice), kills)
    assert max(received.values()) <= 1 + kills
    assert "may have arrived twice" in out or not flying
    assert Counter(received.values())[1] >= RECIPIENTS - len(flying)
