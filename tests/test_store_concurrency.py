"""Several servers writing one list at once (on PostgreSQL in CI's second run; SQLite
serialises writers with its lock): the same reader signing up, or unsubscribing, twice at
the same moment gets one row and no error."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from masthead.content import load_publication
from masthead.store import consent_events, open_store, subscribers, suppressions
from masthead.store import subscriber_list as subs


def _at_once(n: int, fn: Callable[[], object]) -> list[BaseException]:
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_one_address_signing_up_on_many_servers_at_once(demo: Path) -> None:
    store = open_store(load_publication(demo))
    for round_ in range(5):
        address = f"twice{round_}@example.org"
        errors = _at_once(8, lambda a=address: subs.add(store, a, name="Ada", source="form"))
        assert errors == []
        with store.read() as conn:
            n = conn.execute(
                select(func.count()).where(subscribers.c.email_key == address)
            ).scalar_one()
        assert n == 1


def test_one_reader_unsubscribed_by_many_requests_at_once(demo: Path) -> None:
    store = open_store(load_publication(demo))
    added = subs.add(store, "leaving@example.org", confirmed=True)
    sid = added.subscriber.id
    errors = _at_once(8, lambda: subs.unsubscribe(store, sid, source="email"))
    assert errors == []
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(suppressions)).scalar_one() == 1
        status = conn.execute(select(subscribers.c.status)).scalar_one()
        actions = conn.execute(
            select(consent_events.c.action).where(consent_events.c.subscriber_id == sid)
        ).scalars()
        assert status == "unsubscribed"
        assert "unsubscribe" in list(actions)
