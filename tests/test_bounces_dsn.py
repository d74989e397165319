"""`masthead bounces`: DSNs (RFC 3464), mboxes, VERP mapping, the soft-bounce rule,
complaints (ARF) and mailed unsubscribe requests — all built with the email API."""

from __future__ import annotations

import mailbox
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import make_msgid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from masthead.bounces import process_files
from masthead.cli import main
from masthead.content import load_publication
from masthead.store import bounce_events, dispose_engines, open_store, tokens
from masthead.store import subscriber_list as subs


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    dispose_engines()


@pytest.fixture
def pub(demo: Path):
    return load_publication(demo)


@pytest.fixture
def store(pub):
    store = open_store(pub)
    for who in ("ada", "bob", "carol"):
        subs.add(store, f"{who}@example.org", name=who.title(), confirmed=True)
    return store


def ids(store) -> dict[str, int]:
    return {s.email: s.id for s in subs.iter_subscribers(store)}


def state(store, email: str) -> tuple[str, str | None]:
    s = next(s for s in subs.iter_subscribers(store) if s.email == email)
    return s.status, s.suppressed


def dsn(
    to: str, recipient: str, status: str, action: str, diagnostic: str = "", *, msgid: str = ""
) -> MIMEMultipart:
    """A delivery status notification as a mail server sends one (RFC 3464)."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "Mail Delivery System <MAILER-DAEMON@mx.example.net>"
    report["To"] = to
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Message-ID"] = msgid or make_msgid(domain="mx.example.net")
    report.attach(MIMEText("I'm sorry to have to inform you that your message could not\n"))
    per_message = Message()
    per_message["Reporting-MTA"] = "dns; mx.example.net"
    per_recipient = Message()
    per_recipient["Final-Recipient"] = f"rfc822; {recipient}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    if diagnostic:
        per_recipient["Diagnostic-Code"] = f"smtp; {diagnostic}"
    status_part = Message()
    status_part.set_type("message/delivery-status")
    status_part.set_payload([per_message, per_recipient])
    report.attach(status_part)
    original = MIMEText("The issue.")
    original["From"] = "Riverside Bulletin <bulletin@example.org>"
    original["To"] = recipient
    original["Subject"] = "Riverside Bulletin, March 2020"
    report.attach(MIMEMessage(original))
    return report


def write(path: Path, msg: Message) -> Path:
    path.write_bytes(msg.as_bytes())
    return path


def test_hard_bounce_to_the_verp_address_suppresses_exactly_that_subscriber(
    pub, store, tmp_path: Path
) -> None:
    bob = ids(store)["bob@example.org"]
    verp = tokens.verp_address(pub, bob, "bob@example.org")
    # The failed address is a forwarding target: only VERP says it is Bob.
    msg = dsn(verp, "robert@elsewhere.example", "5.1.1", "failed", "550 5.1.1 No such user")
    report = process_files(pub, store, [write(tmp_path / "b.eml", msg)])
    assert report.suppressed == 1
    assert [(e.subscriber_id, e.kind, e.result) for e in report.events] == [
        (bob, "hard", "suppressed (hard bounce)")
    ]
    assert state(store, "bob@example.org") == ("bounced", "hard-bounce")
    assert state(store, "ada@example.org") == ("active", None)
    event = subs.history(store, bob)[-1]
    assert (event.action, event.source) == ("bounce", "email")
    assert "5.1.1" in event.detail and "No such user" in event.detail


def test_without_verp_the_failed_address_is_looked_up(pub, store, tmp_path: Path) -> None:
    msg = dsn("bulletin@example.org", "Carol@Example.org", "5.2.1", "failed", "mailbox disabled")
    report = process_files(pub, store, [write(tmp_path / "c.eml", msg)])
    assert report.events[0].subscriber_id == ids(store)["carol@example.org"]
    assert state(store, "carol@example.org") == ("bounced", "hard-bounce")


def test_a_forged_verp_address_is_not_trusted(pub, store, tmp_path: Path) -> None:
    ada = ids(store)["ada@example.org"]
    forged = f"bulletin+bounce-{ada}-00000000@example.org"
    msg = dsn(forged, "nobody@example.net", "5.1.1", "failed")
    report = process_files(pub, store, [write(tmp_path / "f.eml", msg)])
    assert report.events[0].result == "not on the list"
    assert state(store, "ada@example.org") == ("active", None)


def test_soft_bounces_count_once_a_day_and_the_third_day_suppresses(
    pub, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "today" is the bounce code's clock, fixed at midday: the two bounces of one day must
    # not fall on both sides of midnight UTC (a_day_passes moves the recorded ones back)
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    monkeypatch.setattr("masthead.bounces.utcnow", lambda: noon)
    ada = ids(store)["ada@example.org"]
    verp = tokens.verp_address(pub, ada, "ada@example.org")

    def soft(n: int) -> list[str]:
        msg = dsn(verp, "ada@example.org", "4.2.2", "delayed", "452 4.2.2 Mailbox full")
        return [
            e.result for e in process_files(pub, store, [write(tmp_path / f"s{n}.eml", msg)]).events
        ]

    def a_day_passes() -> None:
        with store.begin() as conn:
            for row in conn.execute(select(bounce_events.c.id, bounce_events.c.at)).all():
                conn.execute(
                    update(bounce_events)
                    .where(bounce_events.c.id == row.id)
                    .values(at=row.at - timedelta(days=1))
                )

    assert soft(1) == ["soft bounce 1/3"]
    assert soft(2) == ["soft bounce 1/3 (already counted today)"]  # another delay warning
    a_day_passes()
    assert soft(3) == ["soft bounce 2/3"]
    assert state(store, "ada@example.org") == ("active", None)
    a_day_passes()
    assert soft(4) == ["suppressed (3 soft bounces)"]
    assert state(store, "ada@example.org") == ("bounced", "hard-bounce")


def test_a_delivery_in_between_resets_the_soft_bounce_count(pub, store, tmp_path: Path) -> None:
    from masthead.bounces import record_delivery

    ada = ids(store)["ada@example.org"]
    verp = tokens.verp_address(pub, ada, "ada@example.org")
    msg = dsn(verp, "ada@example.org", "4.4.1", "delayed")
    process_files(pub, store, [write(tmp_path / "s.eml", msg)])
    with store.begin() as conn:
        record_delivery(conn, ada)
    with store.read() as conn:
        assert subs.get(conn, ada).soft_bounces == 0


def test_an_mbox_dry_run_then_for_real_and_again(pub, store, tmp_path: Path) -> None:
    box_path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(box_path)
    bob = ids(store)["bob@example.org"]
    box.add(dsn(tokens.verp_address(pub, bob), "bob@example.org", "5.1.1", "failed"))
    box.add(dsn("bulletin@example.org", "stranger@example.net", "5.1.1", "failed"))
    box.add(dsn("bulletin@example.org", "carol@example.org", "2.0.0", "delivered"))
    hello = MIMEText("Thanks for the March issue!")
    hello["Subject"] = "Lovely issue"
    box.add(hello)
    box.close()

    report = process_files(pub, store, [box_path], dry_run=True)
    assert report.messages == 4 and report.suppressed == 1
    assert state(store, "bob@example.org") == ("active", None)
    with store.read() as conn:
        assert conn.execute(select(bounce_events)).all() == []

    runner = CliRunner()
    result = runner.invoke(main, ["bounces", str(pub.root), str(box_path)])
    assert result.exit_code == 0, result.output
    assert "Read 4 message(s): 2 bounce(s)/request(s); Suppressed 1 address(es)." in result.output
    assert "stranger@example.net" in result.output and "not on the list" in result.output
    assert "bounces.mbox#3: not a bounce" in result.output
    assert "bounces.mbox#4: not a bounce" in result.output
    assert state(store, "bob@example.org") == ("bounced", "hard-bounce")

    again = process_files(pub, store, [box_path])
    assert [e.result for e in again.events] == ["already recorded", "already recorded"]


def test_an_unsubscribe_mail_from_the_list_unsubscribe_mailto(pub, store, tmp_path: Path) -> None:
    from urllib.parse import unquote

    carol = ids(store)["carol@example.org"]
    mailto = tokens.unsubscribe_mailto(pub, carol, "carol@example.org")
    assert mailto
    request = MIMEText("")
    request["From"] = "carol@example.org"
    request["To"] = "bulletin@example.org"
    request["Subject"] = unquote(mailto.split("subject=", 1)[1])
    forged = MIMEText("")
    forged["Subject"] = f"unsubscribe {ids(store)['ada@example.org']} AAAAAAAAAAAAAAAAAAAAAAAA"
    report = process_files(
        pub, store, [write(tmp_path / "u.eml", request), write(tmp_path / "x.eml", forged)]
    )
    assert [e.result for e in report.events] == ["unsubscribed", "refused: bad token"]
    assert state(store, "carol@example.org") == ("unsubscribed", "unsubscribed")
    assert state(store, "ada@example.org") == ("active", None)


def test_a_spam_complaint_suppresses(pub, store, tmp_path: Path) -> None:
    ada = ids(store)["ada@example.org"]
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "fbl@isp.example"
    report["Subject"] = "Abuse report"
    report.attach(MIMEText("This is an email abuse report."))
    feedback = Message()
    feedback["Feedback-Type"] = "abuse"
    feedback["User-Agent"] = "ISP-FBL/1.0"
    feedback["Version"] = "1"
    part = Message()
    part.set_type("message/feedback-report")
    part.set_payload([feedback])
    report.attach(part)
    original = MIMEText("The issue.")
    original["Return-Path"] = f"<{tokens.verp_address(pub, ada)}>"
    original["To"] = "ada@example.org"
    report.attach(MIMEMessage(original))
    result = process_files(pub, store, [write(tmp_path / "arf.eml", report)])
    assert result.events[0].kind == "complaint"
    assert state(store, "ada@example.org") == ("complained", "complaint")


def test_a_non_standard_bounce_is_read_by_flufl_bounce(pub, store, tmp_path: Path) -> None:
    qmail = MIMEText(
        "Hi. This is the qmail-send program at mx.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<bob@example.org>:\n"
        "Sorry, no mailbox here by that name. (#5.1.1)\n\n"
        "--- Below this line is a copy of the message.\n"
    )
    qmail["From"] = "MAILER-DAEMON@mx.example.net"
    qmail["Subject"] = "failure notice"
    report = process_files(pub, store, [write(tmp_path / "q.eml", qmail)])
    assert [(e.email, e.kind) for e in report.events] == [("bob@example.org", "hard")]
    assert state(store, "bob@example.org") == ("bounced", "hard-bounce")


def test_an_unreadable_file_is_an_error(pub, store, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["bounces", str(pub.root), str(tmp_path / "missing.eml")])
    assert result.exit_code == 1 and "missing.eml: cannot read" in result.output
