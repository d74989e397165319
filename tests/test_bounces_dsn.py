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

from conftest import sqlite_only
from masthead.cli import main
from masthead.content import load_publication
from masthead.store import bounce_events, dispose_engines, open_store, subscribers, tokens
from masthead.store import subscriber_list as subs
from masthead.store.bounces import process_files


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


def test_a_subscriber_s_own_verp_address_acts_on_them_only(pub, store, tmp_path: Path) -> None:
    """A subscriber knows their own VERP address (their mail's Return-Path): a report to it
    that lists other people's addresses still acts on the subscriber alone."""
    bob = ids(store)["bob@example.org"]
    msg = dsn(
        tokens.verp_address(pub, bob, "bob@example.org"), "ada@example.org", "5.1.1", "failed"
    )
    report = process_files(pub, store, [write(tmp_path / "b.eml", msg)])
    assert [(e.email, e.subscriber_id) for e in report.events] == [("bob@example.org", bob)]
    assert state(store, "bob@example.org") == ("bounced", "hard-bounce")
    assert state(store, "ada@example.org") == ("active", None)
    with store.read() as conn:
        (event,) = conn.execute(select(bounce_events)).all()
    assert event.subscriber_id == bob and "the report names ada@example.org" in event.detail


def test_soft_bounces_count_once_a_day_and_the_third_day_suppresses(
    pub, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "today" is the bounce code's clock, fixed at midday: the two bounces of one day must
    # not fall on both sides of midnight UTC (a_day_passes moves the recorded ones back)
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    monkeypatch.setattr("masthead.store.bounces.utcnow", lambda: noon)
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
    from masthead.store.bounces import record_delivery

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
    box.add(
        dsn(tokens.verp_address(pub, bob, "bob@example.org"), "bob@example.org", "5.1.1", "failed")
    )
    box.add(dsn("bulletin@example.org", "stranger@example.net", "5.1.1", "failed", msgid="<f@x>"))
    box.add(dsn("bulletin@example.org", "carol@example.org", "2.0.0", "delivered"))
    hello = MIMEText("Thanks for the March issue!")
    hello["Subject"] = "Lovely issue"
    box.add(hello)
    box.close()

    report = process_files(pub, store, [box_path], dry_run=True)
    assert report.messages == 4 and report.suppressed == 1 and len(report.held) == 1
    assert state(store, "bob@example.org") == ("active", None)
    with store.read() as conn:
        assert conn.execute(select(bounce_events)).all() == []

    runner = CliRunner()
    result = runner.invoke(main, ["bounces", str(pub.root), str(box_path)])
    assert result.exit_code == 0, result.output
    assert (
        "Read 4 message(s): 1 bounce(s)/request(s); Suppressed 1 address(es); "
        "1 held for review." in result.output
    )
    assert "stranger@example.net" in result.output and "<f@x>" in result.output
    assert "bounces.mbox#3: not a bounce" in result.output
    assert "bounces.mbox#4: not a bounce" in result.output
    assert state(store, "bob@example.org") == ("bounced", "hard-bounce")

    again = process_files(pub, store, [box_path])
    assert [e.result for e in again.events] == ["already recorded"]
    assert len(again.held) == 1  # listed again each time: never applied


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


def arf(return_path: str, to: str, *, mail_from: str = "", msgid: str = "") -> MIMEMultipart:
    """A spam complaint as a feedback loop sends one (RFC 5965)."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "fbl@isp.example"
    report["To"] = "bulletin@example.org"
    report["Subject"] = "Abuse report"
    report["Message-ID"] = msgid or make_msgid(domain="isp.example")
    report.attach(MIMEText("This is an email abuse report."))
    feedback = Message()
    feedback["Feedback-Type"] = "abuse"
    feedback["User-Agent"] = "ISP-FBL/1.0"
    feedback["Version"] = "1"
    if mail_from:
        feedback["Original-Mail-From"] = f"<{mail_from}>"
    part = Message()
    part.set_type("message/feedback-report")
    part.set_payload([feedback])
    report.attach(part)
    original = MIMEText("The issue.")
    if return_path:
        original["Return-Path"] = f"<{return_path}>"
    original["To"] = to
    report.attach(MIMEMessage(original))
    return report


def qmail(failed: list[str], delivered_to: str = "", msgid: str = "") -> MIMEText:
    """A non-standard bounce (qmail's), which only flufl.bounce reads."""
    listed = "".join(f"<{a}>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n" for a in failed)
    msg = MIMEText(
        "Hi. This is the qmail-send program at mx.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        f"{listed}--- Below this line is a copy of the message.\n"
    )
    if delivered_to:
        msg["Delivered-To"] = delivered_to
    msg["From"] = "MAILER-DAEMON@mx.example.net"
    msg["To"] = delivered_to or "bulletin@example.org"
    msg["Subject"] = "failure notice"
    msg["Message-ID"] = msgid or make_msgid(domain="mx.example.net")
    return msg


def test_a_spam_complaint_at_the_verp_address_suppresses(pub, store, tmp_path: Path) -> None:
    ada = ids(store)["ada@example.org"]
    msg = arf(tokens.verp_address(pub, ada, "ada@example.org"), "ada@example.org")
    result = process_files(pub, store, [write(tmp_path / "arf.eml", msg)])
    assert [(e.kind, e.subscriber_id) for e in result.events] == [("complaint", ada)]
    assert state(store, "ada@example.org") == ("complained", "complaint")


def test_a_complaint_naming_the_verp_address_as_original_mail_from(
    pub, store, tmp_path: Path
) -> None:
    # Some feedback loops strip the original's headers down to To/Subject; RFC 5965's
    # Original-Mail-From still carries the envelope sender.
    carol = ids(store)["carol@example.org"]
    msg = arf(
        "", "carol@example.org", mail_from=tokens.verp_address(pub, carol, "carol@example.org")
    )
    result = process_files(pub, store, [write(tmp_path / "arf.eml", msg)])
    assert [e.subscriber_id for e in result.events] == [carol]
    assert state(store, "carol@example.org") == ("complained", "complaint")


def test_a_complaint_that_names_no_address_but_its_verp_one(pub, store, tmp_path: Path) -> None:
    carol = ids(store)["carol@example.org"]
    msg = arf("", "", mail_from=tokens.verp_address(pub, carol, "carol@example.org"))
    for part in msg.walk():  # a feedback loop that redacts the original entirely
        if part.get_content_type() == "message/rfc822":
            del part.get_payload()[0]["To"]
    result = process_files(pub, store, [write(tmp_path / "arf.eml", msg)])
    assert [e.subscriber_id for e in result.events] == [carol]
    assert state(store, "carol@example.org") == ("complained", "complaint")
    (held,) = process_files(pub, store, [write(tmp_path / "a2.eml", arf("", ""))]).held
    assert held.kind == "complaint" and held.addresses == ()


def test_a_non_standard_bounce_to_the_verp_address_is_read_by_flufl_bounce(
    pub, store, tmp_path: Path
) -> None:
    bob = ids(store)["bob@example.org"]
    msg = qmail(["bob@example.org"], delivered_to=tokens.verp_address(pub, bob, "bob@example.org"))
    report = process_files(pub, store, [write(tmp_path / "q.eml", msg)])
    assert [(e.email, e.kind) for e in report.events] == [("bob@example.org", "hard")]
    assert state(store, "bob@example.org") == ("bounced", "hard-bounce")


def _everyone(store) -> list[str]:
    return [*ids(store), *(f"stranger{i}@example.net" for i in range(40))]


def _forgeries(pub, store) -> dict[str, tuple[Message, str]]:
    """Reports anyone can mail to the bounce address, each with what it claims; none of
    them carries a valid VERP address of ours for a subscriber on the list."""
    ada = ids(store)["ada@example.org"]
    good_mac = tokens.verp_address(pub, ada, "ada@example.org").split("-")[-1].split("@")[0]
    bad_mac = f"bulletin+bounce-{ada}-{'0' * 12 if good_mac != '0' * 12 else '1' * 12}@example.org"
    older_form = f"bulletin+bounce-{ada}-{tokens._mac(pub, f'verp|{ada}').hex()[:8]}@example.org"
    other_publication = tokens.verp_address(pub, ada, "ada@example.org").replace(
        "bulletin+", "newsletter+"
    )
    many = _everyone(store)
    many_dsn = dsn("bulletin@example.org", many[0], "5.1.1", "failed")
    status = next(p for p in many_dsn.walk() if p.get_content_type() == "message/delivery-status")
    for address in many[1:]:  # one per-recipient block per address: the whole list at once
        block = Message()
        block["Final-Recipient"] = f"rfc822; {address}"
        block["Action"] = "failed"
        block["Status"] = "5.1.1"
        status.get_payload().append(block)
    return {
        "dsn naming everyone": (many_dsn, "not sent to a valid VERP"),
        "arf without verp": (arf("bulletin@example.org", "ada@example.org"), "not sent to"),
        "flufl without verp": (qmail(["bob@example.org", "carol@example.org"]), "not sent to"),
        "verp with a bad mac": (dsn(bad_mac, "ada@example.org", "5.1.1", "failed"), "not sent"),
        "verp of a nonexistent id": (
            dsn(
                tokens.verp_address(pub, 987654, "ada@example.org"),
                "ada@example.org",
                "5.1.1",
                "failed",
            ),
            "#987654, who is no longer on the list",
        ),
        "verp in the older form, over the id alone": (
            dsn(older_form, "ada@example.org", "5.1.1", "failed"),
            "has the older form",
        ),
        "verp of the id's former holder": (
            dsn(tokens.verp_address(pub, ada, "mallory@evil.example"), "x@y.z", "5.1.1", "failed"),
            "former holder",
        ),
        "verp of one subscriber's id with another's address": (
            arf(tokens.verp_address(pub, ada, "bob@example.org"), "ada@example.org"),
            "not sent to a valid VERP",
        ),
        "verp of another from address": (
            dsn(other_publication, "ada@example.org", "5.1.1", "failed"),
            "not sent to a valid VERP",
        ),
        "arf naming two subscribers' verp addresses": (
            arf(
                tokens.verp_address(pub, ada, "ada@example.org"),
                "ada@example.org",
                mail_from=tokens.verp_address(
                    pub, ids(store)["bob@example.org"], "bob@example.org"
                ),
            ),
            "several subscribers",
        ),
    }


FORGERIES = [
    "dsn naming everyone",
    "arf without verp",
    "flufl without verp",
    "verp with a bad mac",
    "verp of a nonexistent id",
    "verp in the older form, over the id alone",
    "verp of the id's former holder",
    "verp of one subscriber's id with another's address",
    "verp of another from address",
    "arf naming two subscribers' verp addresses",
]


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_forged_report_suppresses_nobody_and_is_listed_for_review(
    pub, store, tmp_path: Path, forgery: str
) -> None:
    msg, why = _forgeries(pub, store)[forgery]
    path = write(tmp_path / "forged.eml", msg)
    report = process_files(pub, store, [path])
    assert report.suppressed == 0 and report.events == []
    (held,) = report.held
    assert why in held.reason
    assert held.message_id == msg["Message-ID"] and held.addresses
    assert all(s.status == "active" and s.suppressed is None for s in subs.iter_subscribers(store))
    with store.read() as conn:
        assert conn.execute(select(bounce_events)).all() == []
        assert conn.execute(select(subs.suppressions)).all() == []

    result = CliRunner().invoke(main, ["bounces", str(pub.root), str(path)])
    assert result.exit_code == 0, result.output
    assert "1 report(s) held for review, not applied" in result.output
    assert msg["Message-ID"] in result.output and held.addresses[0] in result.output
    assert why in " ".join(result.output.split())
    assert "Suppressed 0 address(es); 1 held for review." in result.output


def test_an_old_return_path_does_not_act_on_the_id_s_next_holder(
    pub, store, tmp_path: Path
) -> None:
    """A restored database (or an older SQLite table, which reuses the highest id after a
    removal) gives Ada's id to someone else: the bounce address of Ada's old messages is
    held, and the new holder's own bounce address acts on them."""
    ada = ids(store)["ada@example.org"]
    old_return_path = tokens.verp_address(pub, ada, "ada@example.org")
    with store.begin() as conn:
        conn.execute(
            update(subscribers)
            .where(subscribers.c.id == ada)
            .values(email="vic@example.org", email_key="vic@example.org")
        )
    stale = dsn(old_return_path, "ada@example.org", "5.1.1", "failed", msgid="<old@mx>")
    report = process_files(pub, store, [write(tmp_path / "old.eml", stale)])
    assert report.suppressed == 0 and [h.message_id for h in report.held] == ["<old@mx>"]
    assert "former holder" in report.held[0].reason
    assert state(store, "vic@example.org") == ("active", None)

    fresh = dsn(
        tokens.verp_address(pub, ada, "Vic@Example.org"), "vic@example.org", "5.1.1", "failed"
    )
    report = process_files(pub, store, [write(tmp_path / "new.eml", fresh)])
    assert [(e.subscriber_id, e.result) for e in report.events] == [
        (ada, "suppressed (hard bounce)")
    ]


@sqlite_only
def test_a_new_sqlite_database_never_reuses_a_removed_subscriber_s_id(store) -> None:
    last = subs.add(store, "dora@example.org", confirmed=True).subscriber.id
    subs.remove(store, "dora@example.org")
    assert subs.add(store, "eve@example.org", confirmed=True).subscriber.id > last


def test_a_forged_report_naming_everyone_lists_how_many_it_names(
    pub, store, tmp_path: Path
) -> None:
    msg, _ = _forgeries(pub, store)["dsn naming everyone"]
    (held,) = process_files(pub, store, [write(tmp_path / "f.eml", msg)]).held
    assert set(held.addresses) == set(_everyone(store))
    result = CliRunner().invoke(main, ["bounces", str(pub.root), str(tmp_path / "f.eml")])
    assert f"({len(_everyone(store))} in all)" in result.output


def test_an_unreadable_file_is_an_error(pub, store, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["bounces", str(pub.root), str(tmp_path / "missing.eml")])
    assert result.exit_code == 1 and "missing.eml: cannot read" in result.output


def test_a_held_report_cannot_write_escape_sequences_to_the_terminal(
    pub, store, tmp_path: Path
) -> None:
    msg = dsn("bulletin@example.org", "ada@example.org", "5.1.1", "failed", msgid="<x@y>")
    del msg["Message-ID"]
    msg["Message-ID"] = "<x\x1b]0;pwned\x07@y>"
    result = CliRunner().invoke(main, ["bounces", str(pub.root), str(write(tmp_path / "e", msg))])
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "<x?]0;pwned?@y>" in result.output
