"""`masthead send` against a real SMTP server (aiosmtpd on 127.0.0.1) with faults injected:
every message parsed at the sink, every outbox row checked in the real database."""

from __future__ import annotations

import email
import re
from collections import Counter
from dataclasses import replace
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from masthead.cli import main
from masthead.deliver import create_send, send_issue, send_state, set_paused
from masthead.deliver.ratelimit import DomainLimits, SlidingWindow
from masthead.store import bounce_events, outbox, subscribers, suppressions
from masthead.store.subscriber_list import suppress
from masthead.store.tokens import unsubscribe_url, verp_address
from sendkit import (
    EXPECTED_HEADERS,
    FAST_RETRIES,
    SLUG,
    add_subscribers,
    built_template,
    open_pub,
    send_cli,
    wired_copy,
)
from smtp_sink import SmtpSink


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_template(tmp_path_factory.mktemp("send") / "pub")


@pytest.fixture
def sink():  # type: ignore[no-untyped-def]
    with SmtpSink() as s:
        yield s


@pytest.fixture
def root(template: Path, tmp_path: Path, sink: SmtpSink) -> Path:
    return wired_copy(template, tmp_path / "pub", sink.port)


def rows(store, **where):  # type: ignore[no-untyped-def]
    with store.read() as conn:
        query = select(outbox).where(outbox.c.issue_slug == SLUG)
        for key, value in where.items():
            query = query.where(outbox.c[key] == value)
        return conn.execute(query.order_by(outbox.c.id)).all()


def send(root: Path, **kw):  # type: ignore[no-untyped-def]
    pub, store, issue = open_pub(root)
    create_send(store, SLUG)
    return send_issue(pub, store, issue, policy=kw.pop("policy", FAST_RETRIES), **kw)


NASTY_NAMES = {
    1: "Eve\r\nBcc: victim@example.org",
    2: "Eve =?UTF-8?Q?=0A?=Bcc: victim@example.org",
    3: "Eve\u2028Bcc: victim@example.org",
    4: "Zoë Lindqvist",
    5: '"Quoted, Name" <evil@example.org>',
}


def test_each_subscriber_gets_one_personal_message(root: Path, sink: SmtpSink) -> None:
    pub, store, _ = open_pub(root)
    addresses = add_subscribers(store, 40, names=NASTY_NAMES)
    report = send(root)
    assert report.state.complete and report.run.sent == 40
    assert sink.by_recipient() == Counter(addresses)
    ids = {r.email: r.subscriber_id for r in rows(store)}
    message_ids = set()
    for received in sink.messages:
        message = email.message_from_bytes(received.data, policy=policy.default)
        assert list(message.keys()) == EXPECTED_HEADERS, received.rcpt
        (to,) = message["To"].addresses
        assert to.addr_spec == received.rcpt
        assert "\n" not in to.display_name and "Bcc" not in message
        sid = ids[received.rcpt]
        assert received.mail_from == verp_address(pub, sid, received.rcpt)
        url = unsubscribe_url(pub, sid, received.rcpt)
        assert message["List-Unsubscribe"].startswith(f"<{url}>, <mailto:news@example.org?")
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert f'href="{url}"' in html
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert f"Unsubscribe: {url}" in text
        assert "The river is high this spring" in text
        message_ids.add(message["Message-ID"])
    assert len(message_ids) == 40
    assert {r.message_id for r in rows(store)} == message_ids
    names = {
        m.rcpt: email.message_from_bytes(m.data, policy=policy.default)["To"].addresses[0]
        for m in sink.messages
    }
    assert names["reader4@example4.org"].display_name == "Zoë Lindqvist"


def test_temporary_failures_are_retried_and_nobody_gets_two(root: Path, sink: SmtpSink) -> None:
    """451 on ~10% of RCPTs and 421 (connection closed) on every 37th MAIL."""
    sink.tempfail_rcpt = 0.1
    sink.drop_connection_every = 37
    _, store, _ = open_pub(root)
    addresses = add_subscribers(store, 300)
    report = send(root)
    assert report.state.complete
    assert sink.by_recipient() == Counter(addresses)  # all delivered, none twice
    retried = [r for r in rows(store) if r.attempts > 1]
    assert retried, "the faults were not injected"
    assert all(r.state == "sent" for r in rows(store))


def test_hard_bounces_are_tried_once_and_suppressed(root: Path, sink: SmtpSink) -> None:
    _, store, _ = open_pub(root)
    addresses = add_subscribers(store, 20)
    refused = set(addresses[3:6])
    sink.reject = refused
    report = send(root)
    assert report.state.complete  # a bounce is the reader's end, not a failed send
    assert report.state.bounced == 3 and report.state.count("sent") == 17
    assert {a: sink.attempts[a] for a in refused} == dict.fromkeys(refused, 1)
    assert set(sink.by_recipient()) == set(addresses) - refused
    with store.read() as conn:
        assert set(conn.execute(select(suppressions.c.email_key)).scalars()) == refused
        statuses = dict(conn.execute(select(subscribers.c.email, subscribers.c.status)).all())
        assert {statuses[a] for a in refused} == {"bounced"}
        assert len(conn.execute(select(bounce_events)).all()) == 3
    for row in rows(store, state="failed"):
        assert row.last_code == 550 and row.last_error.startswith("hard bounce: ")
    # a second run sends nothing more
    again = send(root)
    assert again.run.sent == 0 and len(sink.messages) == 17


def test_a_reply_lost_after_data_is_unknown_and_not_resent(root: Path, sink: SmtpSink) -> None:
    _, store, _ = open_pub(root)
    addresses = add_subscribers(store, 10)
    sink.drop_after_data = {addresses[4]}
    report = send(root)
    assert report.state.count("unknown") == 1 and not report.state.complete
    (unknown,) = rows(store, state="unknown")
    assert unknown.email == addresses[4]
    assert sink.by_recipient() == Counter(addresses)  # it did arrive: that is the point
    send(root)  # not resent by default
    assert sink.by_recipient()[addresses[4]] == 1
    sink.drop_after_data = set()
    report = send(root, resend_unknown=True)
    assert report.state.complete
    assert sink.by_recipient()[addresses[4]] == 2


def test_pause_stops_claiming_and_a_new_run_resumes(root: Path, sink: SmtpSink) -> None:
    pub, store, issue = open_pub(root)
    addresses = add_subscribers(store, 400)
    create_send(store, SLUG)

    def pause_once(stats) -> None:  # type: ignore[no-untyped-def]
        if stats.sent > 0:
            set_paused(store, SLUG, True)

    policy = replace(FAST_RETRIES, batch=20)
    first = send_issue(pub, store, issue, policy=policy, progress=pause_once)
    assert first.run.paused
    assert 0 < first.state.count("sent") < 400 and first.state.remaining > 0
    assert send_state(store, SLUG).paused
    second = send_issue(pub, store, issue, policy=FAST_RETRIES)
    assert second.state.complete and not send_state(store, SLUG).paused
    assert sink.by_recipient() == Counter(addresses)


def test_who_leaves_after_the_send_was_created_is_not_mailed(root: Path, sink: SmtpSink) -> None:
    pub, store, issue = open_pub(root)
    addresses = add_subscribers(store, 10)
    created, total = create_send(store, SLUG)
    assert created and total == 10
    suppress(store, addresses[2], "unsubscribed")
    with store.begin() as conn:  # one more subscriber after the send was created
        conn.execute(
            subscribers.insert().values(
                email="late@example.org", email_key="late@example.org", status="active"
            )
        )
    report = send_issue(pub, store, issue, policy=FAST_RETRIES)
    assert report.state.complete and report.state.count("suppressed") == 1
    assert set(sink.by_recipient()) == set(addresses) - {addresses[2]}


def test_two_senders_at_once_do_not_double_send(root: Path, sink: SmtpSink) -> None:
    _, store, _ = open_pub(root)
    addresses = add_subscribers(store, 600)
    create_send(store, SLUG)
    first, second = send_cli(root, "--batch", "20"), send_cli(root, "--batch", "20")
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    assert sink.by_recipient() == Counter(addresses)
    counts = [int(re.search(r"sent ([\d,]+) in", out).group(1)) for out, _ in outputs]  # type: ignore[union-attr]
    assert sum(counts) == 600


# ----------------------------------------------------------------------------------------
# The command line


def test_dry_run_sends_and_records_nothing(root: Path, sink: SmtpSink) -> None:
    _, store, _ = open_pub(root)
    add_subscribers(store, 3)
    result = CliRunner().invoke(main, ["send", str(root), "--issue", SLUG, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Dry run: nothing is sent." in result.output
    assert "Messages: 3," in result.output
    assert "Subject:  Test Bulletin: Volume 1 Number 2 · March 2020" in result.output
    assert not send_state(store, SLUG).exists and not sink.messages


def test_confirmation_is_asked_and_no_means_no(root: Path, sink: SmtpSink) -> None:
    _, store, _ = open_pub(root)
    add_subscribers(store, 1234)
    result = CliRunner().invoke(main, ["send", str(root), "--issue", SLUG], input="n\n")
    assert "Send issue 2020-03 to 1,234 subscribers? [y/N]" in result.output
    assert result.exit_code == 1 and "Nothing sent." in result.output
    assert not send_state(store, SLUG).exists and not sink.messages


def test_send_yes_reports_and_exits_zero(root: Path, sink: SmtpSink) -> None:
    _, store, _ = open_pub(root)
    add_subscribers(store, 5)
    sink.reject = {"reader1@example1.org"}
    args = ["send", str(root), "--issue", SLUG, "--yes", "--retry-base", "0.01"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "sent 4 · failed 0 · bounced 1 · unknown 0 · suppressed 0 · waiting 0 of 5" in (
        result.output
    )


def test_test_to_sends_one_unrecorded_copy(root: Path, sink: SmtpSink) -> None:
    _, store, _ = open_pub(root)
    add_subscribers(store, 5)
    args = ["send", str(root), "--issue", SLUG, "--test-to", "editor@example.org"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert [m.rcpt for m in sink.messages] == ["editor@example.org"]
    assert not send_state(store, SLUG).exists


def test_pause_command(root: Path, sink: SmtpSink) -> None:
    _, store, _ = open_pub(root)
    add_subscribers(store, 2)
    args = ["send", str(root), "--issue", SLUG, "--pause"]
    assert CliRunner().invoke(main, args).exit_code == 1  # nothing to pause yet
    create_send(store, SLUG)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "Paused" in result.output
    assert send_state(store, SLUG).paused and not sink.messages


def test_an_unbuilt_issue_is_refused_with_the_fix(
    template: Path, tmp_path: Path, sink: SmtpSink
) -> None:
    root = wired_copy(template, tmp_path / "pub", sink.port)
    (root / "_site" / "manifest.json").unlink()
    result = CliRunner().invoke(main, ["send", str(root), "--issue", SLUG, "--yes"])
    assert result.exit_code == 1
    assert "issue 2020-03 is not built" in result.output and "masthead build" in result.output


def test_an_unreachable_server_stops_the_send_and_loses_nobody(root: Path) -> None:
    toml = root / "masthead.toml"
    toml.write_text(re.sub(r"port = \d+", "port = 1", toml.read_text()))
    _, store, _ = open_pub(root)
    add_subscribers(store, 5)
    result = CliRunner().invoke(main, ["send", str(root), "--issue", SLUG, "--yes"])
    assert result.exit_code == 1 and "cannot connect to the mail server" in result.output
    assert {r.state for r in rows(store)} == {"pending"}


# ----------------------------------------------------------------------------------------
# Rate limits


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window_holds_over_every_window() -> None:
    clock = FakeClock()
    window = SlidingWindow(10, 60.0, clock=clock)
    sent: list[float] = []
    for _ in range(55):
        wait = window.wait_time()
        clock.now += wait if wait > 0 else 1.7
        if window.wait_time() == 0:
            window.take()
            sent.append(clock.now)
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + 60) <= 10
    assert len(sent) > 20  # and it is not simply stuck


def test_domain_limits_are_per_domain() -> None:
    limits = DomainLimits(2)
    for _ in range(2):
        limits.take("a.org")
    assert limits.wait_time("a.org") > 0
    assert limits.wait_time("b.org") == 0


def test_sigterm_finishes_what_is_in_flight_then_stops(root: Path, sink: SmtpSink) -> None:
    """A polite stop (SIGTERM, or Ctrl-C) records every answer: a new run sends nobody twice."""
    import signal
    import time

    _, store, _ = open_pub(root)
    addresses = add_subscribers(store, 3000)
    create_send(store, SLUG)
    sender = send_cli(root, "--batch", "50")
    try:
        deadline = time.monotonic() + 60
        while len(sink.messages) < 300 and sender.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        sender.send_signal(signal.SIGTERM)
        out, err = sender.communicate(timeout=60)
    finally:  # never leave a sender running after a failed assertion
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    assert sender.returncode == 1, out + err
    assert "Interrupted: run `masthead send` again to go on." in out
    assert not rows(store, state="sending")
    assert 0 < len(sink.messages) < 3000
    final = send_cli(root)
    out, err = final.communicate(timeout=60)
    assert final.returncode == 0, out + err
    assert sink.by_recipient() == Counter(addresses)  # everyone once: nobody twice


def test_sigterm_gives_back_what_waits_for_the_rate_limit_at_once(
    template: Path, tmp_path: Path, sink: SmtpSink
) -> None:
    """Regression: on SIGTERM a rate-limited sender went on sending every message it had
    queued (at one a second here, 20 s) before it stopped, so systemd's stop timeout killed
    it. The queued messages now go back to pending at once; only what is in flight is
    finished."""
    import signal
    import time

    root = wired_copy(template, tmp_path / "slow", sink.port, "rate_per_minute = 60\n")
    _, store, _ = open_pub(root)
    add_subscribers(store, 20)
    create_send(store, SLUG)
    sender = send_cli(root, "--batch", "5")  # a queue of 10: full, the claims wait on it
    try:
        deadline = time.monotonic() + 60
        while not sink.messages:
            assert time.monotonic() < deadline and sender.poll() is None, sender.communicate()
            time.sleep(0.005)
        asked = time.monotonic()
        sender.send_signal(signal.SIGTERM)
        out, err = sender.communicate(timeout=60)
        took = time.monotonic() - asked
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    assert sender.returncode == 1, out + err
    assert "Interrupted" in out
    sent = len(sink.messages)
    assert sent <= 3, sent  # what was in flight (3 connections); not the queue, at 1 a second
    assert took < 4, took
    assert not rows(store, state="sending")
    assert len(rows(store, state="pending")) == 20 - sent  # given back, to the next run


def test_readers_get_their_language_edition(
    built_demo: Path, tmp_path: Path, sink: SmtpSink
) -> None:
    root = wired_copy(built_demo, tmp_path / "demo", sink.port)
    _, store, _ = open_pub(root)
    add_subscribers(store, 2)
    with store.begin() as conn:
        conn.execute(
            subscribers.update()
            .where(subscribers.c.email == "reader1@example1.org")
            .values(language="fa")
        )
    assert send(root).state.complete
    by_rcpt = {m.rcpt: m.parsed() for m in sink.messages}
    english, persian = by_rcpt["reader0@example0.org"], by_rcpt["reader1@example1.org"]
    html_en = english.get_body(("html",)).get_content()  # type: ignore[union-attr]
    html_fa = persian.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert '<html lang="en" dir="ltr">' in html_en
    assert '<html lang="fa" dir="rtl">' in html_fa
    assert "riverside-bulletin-2020-03.fa.pdf" in html_fa
    assert "riverside-bulletin-2020-03.pdf" in html_en
    assert english["Subject"].startswith("Riverside Bulletin: ")
    assert persian["Subject"].startswith("خبرنامهٔ ریورساید")


def soft_bounce(pub, store, tmp_path: Path, subscriber_id: int, address: str) -> list[str]:  # type: ignore[no-untyped-def]
    """A delay notice (RFC 3464, status 4.2.2) to the subscriber's VERP address, read by
    ``masthead bounces``; what it did."""
    from email.message import Message
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText
    from email.utils import make_msgid

    from masthead.store.bounces import process_files

    report = MIMEMultipart("report", report_type="delivery-status")
    report["To"] = verp_address(pub, subscriber_id, address)
    report["Message-ID"] = make_msgid(domain="mx.example.net")
    report.attach(MIMEText("Your message is delayed.\n"))
    per_message, per_recipient = Message(), Message()
    per_message["Reporting-MTA"] = "dns; mx.example.net"
    per_recipient["Final-Recipient"] = f"rfc822; {address}"
    per_recipient["Action"] = "delayed"
    per_recipient["Status"] = "4.2.2"
    status = Message()
    status.set_type("message/delivery-status")
    status.set_payload([per_message, per_recipient])
    report.attach(status)
    path = tmp_path / f"{report['Message-ID'].strip('<>')}.eml"
    path.write_bytes(report.as_bytes())
    return [e.result for e in process_files(pub, store, [path]).events]


def test_a_delivery_between_soft_bounces_starts_their_count_again(
    root: Path, sink: SmtpSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Soft bounces months apart, each followed by an issue the server accepted, must not
    add up to a suppression (issue 13, point 8: the sender never recorded deliveries)."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    monkeypatch.setattr("masthead.store.bounces.utcnow", lambda: noon)

    def a_day_passes() -> None:
        with store.begin() as conn:  # the recorded bounces move back a day, one by one
            for row in conn.execute(select(bounce_events.c.id, bounce_events.c.at)).all():
                conn.execute(
                    update(bounce_events)
                    .where(bounce_events.c.id == row.id)
                    .values(at=row.at - timedelta(days=1))
                )

    pub, store, _ = open_pub(root)
    ada, bob = add_subscribers(store, 2)
    with store.read() as conn:
        by_email = {r.email: r for r in conn.execute(select(subscribers)).all()}
    ada_id = by_email[ada].id
    assert soft_bounce(pub, store, tmp_path, ada_id, ada) == ["soft bounce 1/3"]
    a_day_passes()
    assert soft_bounce(pub, store, tmp_path, ada_id, ada) == ["soft bounce 2/3"]
    a_day_passes()

    report = send(root)
    assert report.state.complete and sink.by_recipient() == Counter([ada, bob])
    with store.read() as conn:
        after = {r.email: r for r in conn.execute(select(subscribers)).all()}
    assert after[ada].soft_bounces == 0
    assert after[bob].updated_at == by_email[bob].updated_at  # a count of 0 is not rewritten

    assert soft_bounce(pub, store, tmp_path, ada_id, ada) == ["soft bounce 1/3"]
    assert after[ada].status == "active"
    with store.read() as conn:
        assert conn.execute(select(suppressions)).all() == []


def test_the_longest_name_allowed_still_makes_a_message_the_server_takes(
    root: Path, sink: SmtpSink
) -> None:
    """Names are capped at 200 characters everywhere (issue 13, point 6: a 10,000-character
    single-word name made its To line too long for SMTP, ``500 Line too long``)."""
    from masthead.store.addresses import MAX_NAME_LENGTH

    _, store, _ = open_pub(root)
    names = {0: "x" * MAX_NAME_LENGTH, 1: "é" * MAX_NAME_LENGTH, 2: "ab " * 66 + "cd"}
    addresses = add_subscribers(store, 3, names=names)
    report = send(root)
    assert report.state.complete and sink.by_recipient() == Counter(addresses)
    for m in sink.messages:
        parsed = email.message_from_bytes(m.data, policy=policy.default)
        i = addresses.index(m.rcpt)
        shown = parsed["To"].addresses[0].display_name
        # (Python's parser puts a space between the encoded words of a folded phrase.)
        assert shown == names[i] if i != 1 else shown.replace(" ", "") == names[i]
        assert max(len(line) for line in m.data.split(b"\r\n")) <= 998


def test_a_name_stored_before_the_cap_is_cut_and_its_message_goes_out(
    root: Path, sink: SmtpSink
) -> None:
    """A 10,000-character name stored by an older Masthead (here: written straight to the
    table) is cut to 200 characters in the To line instead of failing the message with
    ``500 Line too long`` (issue 13, point 6)."""
    _, store, _ = open_pub(root)
    names = {0: "y" * 10_000, 1: "ش" * 10_000, 2: "Ann " * 2_500}
    addresses = add_subscribers(store, 3, names=names)
    report = send(root)
    assert report.state.complete and sink.by_recipient() == Counter(addresses)
    for m in sink.messages:
        shown = email.message_from_bytes(m.data, policy=policy.default)["To"].addresses[0]
        assert shown.addr_spec == m.rcpt
        assert 100 < len(shown.display_name.replace(" ", "")) <= 200
        assert max(len(line) for line in m.data.split(b"\r\n")) <= 998
