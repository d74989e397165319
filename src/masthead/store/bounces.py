"""Bounces, complaints and mailed unsubscribe requests: ``masthead bounces DIR FILE…``.

Reads delivery status notifications (RFC 3464 DSNs), non-standard bounces (recognised
by ``flufl.bounce``, Mailman's library), feedback reports (RFC 5965 ARF: spam
complaints) and the mails of the List-Unsubscribe ``mailto:`` (subject
``unsubscribe <id> <token>``), one message per ``.eml`` file or many in an mbox.

Mapping to a subscriber: the bounce is addressed to the VERP return path of the message
that failed (``<local>+bounce-<id>-<mac>@<domain>``), whose signed id names the subscriber
exactly (an ARF report carries it in the original message's Return-Path, or as
``Original-Mail-From``). The mac covers the id and the subscriber's email address, and is
checked against the address of the row that holds the id now: ids are reused (SQLite after
a removal, ``masthead db restore``), and a former subscriber's old Return-Path must not
speak for the id's next holder. Only such a report acts, and only on that one subscriber,
whatever addresses it lists: anyone can mail the bounce address a report that names the
whole list. A report without a valid VERP address of ours (none, a bad mac, another From
address, a subscriber no longer on the list, an address signed for the id's former holder,
or several subscribers' addresses) is never applied; it is listed for review
(:attr:`BounceReport.held`). So is a bounce of a message sent before the mac covered the
email address (the older, 8-hex-digit VERP form): such reports are held, not applied.

The rule:

- a hard bounce (status 5.x.x, or ``Action: failed``, or a permanent failure per
  flufl.bounce) suppresses the address at once (reason ``hard-bounce``);
- soft bounces (status 4.x.x, ``Action: delayed``) count at most once per day (a mail
  server sends several delay warnings for one message); the third day of soft bounces
  with no successful delivery in between suppresses the address. A new confirmation, or
  the mail server accepting one of our messages for the subscriber, resets the count (the
  sender does it with the batch that records the answers; :func:`record_delivery` for other
  code);
- a complaint suppresses at once (reason ``complaint``);
- each bounce report is counted once, by its Message-ID, however often it is read.
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_binary_file
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, select, update

from ..errors import MastheadError
from . import subscriber_list as subs
from .addresses import email_key
from .schema import bounce_events, subscribers, utcnow
from .tokens import VERP_MAC_HEX, check_token, check_verp, verp_claim

if TYPE_CHECKING:
    from ..model import Publication
    from . import Store

SOFT_BOUNCE_LIMIT = 3
"""Days of soft bounces, with no delivery in between, that suppress an address."""

_VERP_HEADERS = ("X-Original-To", "Delivered-To", "Envelope-To", "X-Envelope-To", "To")
_UNSUBSCRIBE_SUBJECT = re.compile(
    r"^\s*unsubscribe\s+(\d{1,18})\s+([A-Za-z0-9_.-]{8,64})\s*$", re.I
)


class BounceFileError(MastheadError):
    """A file given to ``masthead bounces`` cannot be read."""


@dataclass(frozen=True)
class Failure:
    """One failed recipient of a report."""

    email: str
    kind: str  # "hard", "soft" or "complaint"
    detail: str


@dataclass
class Event:
    """What was done with one failure (one row of the report)."""

    source: str
    email: str
    subscriber_id: int | None
    kind: str
    result: str


@dataclass(frozen=True)
class Held:
    """A report that was not applied, for the editor to review."""

    source: str
    message_id: str
    kind: str
    addresses: tuple[str, ...]
    """The addresses the report names (it may name many: a forgery names the whole list)."""
    reason: str


@dataclass
class BounceReport:
    messages: int = 0
    events: list[Event] = field(default_factory=list)
    suppressed: int = 0
    warnings: list[str] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)


# ----------------------------------------------------------------------------------------
# Reading


def read_messages(path: Path) -> Iterator[tuple[str, Message]]:
    """(label, message) for each message in ``path``: an mbox or a single message."""
    try:
        with open(path, "rb") as f:
            head = f.read(5)
    except OSError as exc:
        raise BounceFileError(f"cannot read: {exc.strerror}", path=path) from None
    if head == b"From ":
        box = mailbox.mbox(path, factory=None, create=False)
        try:
            for i, msg in enumerate(box):
                yield f"{path.name}#{i + 1}", msg
        finally:
            box.close()
    else:
        with open(path, "rb") as f:
            yield path.name, message_from_binary_file(f, policy=compat32)


def _status_kind(status: str, action: str) -> str | None:
    status = status.strip()
    action = action.strip().lower()
    if action in ("delivered", "relayed", "expanded"):
        return None
    if status.startswith("5") or action == "failed":
        return "hard"
    if status.startswith("4") or action == "delayed":
        return "soft"
    return None


def _address(field_value: str) -> str:
    """``rfc822; a@b`` → ``a@b``."""
    _, _, addr = field_value.partition(";")
    return (addr or field_value).strip().strip("<>")


def dsn_failures(msg: Message) -> list[Failure]:
    """The failed recipients of an RFC 3464 report (empty if there is none)."""
    failures: list[Failure] = []
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks[1:]:  # the first block is about the whole message
            recipient = block.get("Original-Recipient") or block.get("Final-Recipient")
            if not recipient:
                continue
            status = str(block.get("Status", ""))
            kind = _status_kind(status, str(block.get("Action", "")))
            if kind is None:
                continue
            diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
            detail = f"{status} {diagnostic}".strip()
            failures.append(Failure(_address(str(recipient)), kind, detail[:500]))
    return failures


def _original(msg: Message) -> Message | None:
    """The headers of the original message a report returns (``message/rfc822`` or
    ``text/rfc822-headers``), if it carries them."""
    for part in msg.walk():
        if part.get_content_type() not in ("message/rfc822", "text/rfc822-headers"):
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload:
            return payload[0]
        if isinstance(payload, str):
            from email import message_from_string

            return message_from_string(payload, policy=compat32)
    return None


def _feedback(msg: Message) -> Message | None:
    """The ``message/feedback-report`` fields of an RFC 5965 report, if ``msg`` is one."""
    if msg.get_content_type() != "multipart/report":
        return None
    if (msg.get_param("report-type") or "").lower() != "feedback-report":
        return None
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            return payload[0] if isinstance(payload, list) and payload else Message()
    return Message()


def arf_complaint(msg: Message) -> list[Failure]:
    """The complaining recipient of an RFC 5965 feedback report, if ``msg`` is one."""
    feedback = _feedback(msg)
    if feedback is None:
        return []
    original = _original(msg)
    addresses: list[str] = []
    if original is not None:
        addresses += [a for _, a in getaddresses([str(original.get("Return-Path", ""))])]
        addresses += [a for _, a in getaddresses([str(original.get("To", ""))])]
    if feedback.get("Original-Rcpt-To"):
        addresses.append(str(feedback["Original-Rcpt-To"]))
    kind = str(feedback.get("Feedback-Type", "abuse"))
    # A report that names no address still complains: its VERP address (Original-Mail-From)
    # may say who.
    return [Failure(a, "complaint", f"feedback report: {kind}") for a in addresses if a] or [
        Failure("", "complaint", f"feedback report: {kind}")
    ]


def flufl_failures(msg: Message) -> list[Failure]:
    """Failures of non-standard bounce formats, per flufl.bounce."""
    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector choking on an odd message (e.g. no From): not a bounce
        return []
    out = [Failure(a.decode("utf-8", "replace"), "hard", "permanent failure") for a in permanent]
    out += [
        Failure(a.decode("utf-8", "replace"), "soft", "temporary failure")
        for a in temporary
        if a not in permanent
    ]
    return out


def _verp_candidates(msg: Message) -> Iterator[str]:
    """Every address where a report may carry the VERP return path: the headers of its
    own delivery, the Return-Path of the original it returns, and an ARF report's
    ``Original-Mail-From`` (the original's envelope sender)."""
    sources: list[tuple[Message, tuple[str, ...]]] = [(msg, _VERP_HEADERS)]
    original = _original(msg)
    if original is not None:
        sources.append((original, ("Return-Path",)))
    feedback = _feedback(msg)
    if feedback is not None:
        sources.append((feedback, ("Original-Mail-From",)))
    for message, headers in sources:
        for header in headers:
            for value in message.get_all(header) or []:
                for _, addr in getaddresses([str(value)]):
                    yield addr


MAX_VERP_CLAIMS = 20
"""VERP addresses of ours a report may carry that are looked up (a genuine one has one)."""


def verp_claims(pub: Publication, msg: Message) -> set[tuple[int, str]]:
    """(id, mac) of every address in the report shaped like a VERP address of ours, the
    mac not yet checked (:func:`_verp_row` does it against the subscriber's row)."""
    return {c for a in _verp_candidates(msg) if (c := verp_claim(pub, a)) is not None}


# ----------------------------------------------------------------------------------------
# Acting


def record_delivery(conn: Connection, subscriber_id: int) -> None:
    """A message reached the subscriber: soft bounces start counting from zero again."""
    conn.execute(
        update(subscribers)
        .where(subscribers.c.id == subscriber_id)
        .where(subscribers.c.soft_bounces != 0)
        .values(soft_bounces=0, updated_at=utcnow())
    )


def log_bounce(
    conn: Connection,
    subscriber_id: int,
    email: str,
    kind: str,
    detail: str,
    *,
    message_id: str | None = None,
    at: datetime | None = None,
) -> None:
    """Append one bounce (``hard``, ``soft`` or ``complaint``) to ``bounce_events``."""
    conn.execute(
        bounce_events.insert().values(
            subscriber_id=subscriber_id,
            email=email,
            kind=kind,
            detail=detail,
            at=at or utcnow(),
            message_id=message_id or None,
        )
    )


def record_hard_bounce(
    conn: Connection,
    subscriber_id: int,
    email: str,
    detail: str,
    *,
    suppression_detail: str | None = None,
    message_id: str | None = None,
    at: datetime | None = None,
) -> None:
    """A hard bounce: log it and suppress the address (reason ``hard-bounce``). The one
    statement of the rule, whether the mail server refused the message during the send
    (:func:`masthead.deliver.outbox.record`) or a bounce report says so later
    (:func:`apply_failure`). ``suppression_detail`` goes with the consent event, if it
    should differ from the bounce's own ``detail``."""
    log_bounce(conn, subscriber_id, email, "hard", detail, message_id=message_id, at=at)
    subs.suppress_address(
        conn,
        email,
        "hard-bounce",
        source="email",
        detail=detail if suppression_detail is None else suppression_detail,
    )


def _already_seen(conn: Connection, message_id: str, subscriber_id: int) -> bool:
    if not message_id:
        return False
    query = (
        select(bounce_events.c.id)
        .where(bounce_events.c.message_id == message_id)
        .where(bounce_events.c.subscriber_id == subscriber_id)
    )
    return conn.execute(query.limit(1)).first() is not None


def _soft_bounced_today(conn: Connection, subscriber_id: int) -> bool:
    last = conn.execute(
        select(bounce_events.c.at)
        .where(bounce_events.c.subscriber_id == subscriber_id)
        .where(bounce_events.c.kind == "soft")
        .order_by(bounce_events.c.id.desc())
        .limit(1)
    ).scalar()
    return last is not None and last.date() == utcnow().date()


def apply_failure(conn: Connection, failure: Failure, row: Row[Any], message_id: str) -> str:
    """Record one failure of the subscriber ``row`` (the one a valid VERP address names)
    and apply the rule; return what happened, in words."""
    sid, email = row.id, row.email
    if _already_seen(conn, message_id, sid):
        return "already recorded"
    counted_today = failure.kind == "soft" and _soft_bounced_today(conn, sid)
    detail = failure.detail
    if failure.email and email_key(failure.email) != row.email_key:
        # A forwarding target, usually: the VERP id, not the listed address, says who.
        detail = f"{detail} (the report names {failure.email[:254]})"
    already_suppressed = subs.suppression_reason(conn, email) is not None
    if failure.kind == "hard" and not already_suppressed:
        record_hard_bounce(conn, sid, email, detail, message_id=message_id)
        return "suppressed (hard bounce)"
    log_bounce(conn, sid, email, failure.kind, detail, message_id=message_id)
    failure = Failure(failure.email, failure.kind, detail)
    if already_suppressed:
        return "already suppressed"
    if failure.kind == "complaint":
        subs.suppress_address(conn, email, "complaint", source="email", detail=failure.detail)
        return "suppressed (complaint)"
    if counted_today:
        return f"soft bounce {row.soft_bounces}/{SOFT_BOUNCE_LIMIT} (already counted today)"
    count = row.soft_bounces + 1
    conn.execute(
        update(subscribers)
        .where(subscribers.c.id == row.id)
        .values(soft_bounces=count, updated_at=utcnow())
    )
    if count >= SOFT_BOUNCE_LIMIT:
        detail = f"{count} days of soft bounces; last: {failure.detail}"
        subs.suppress_address(conn, email, "hard-bounce", source="email", detail=detail)
        return f"suppressed ({count} soft bounces)"
    return f"soft bounce {count}/{SOFT_BOUNCE_LIMIT}"


def _unsubscribe_request(
    pub: Publication, conn: Connection, msg: Message
) -> tuple[int, str, str] | None:
    """(id, email, result) when ``msg`` is a List-Unsubscribe mailto request."""
    match = _UNSUBSCRIBE_SUBJECT.match(str(msg.get("Subject", "")))
    if not match:
        return None
    sid = int(match[1])
    row = subs.get(conn, sid)
    if row is None or not check_token(pub, "unsubscribe", sid, row.email, match[2]):
        return sid, row.email if row else "?", "refused: bad token"
    if subs.suppression_reason(conn, row.email):
        return sid, row.email, "already suppressed"
    subs.suppress_address(conn, row.email, "unsubscribed", source="email", detail="mailto")
    return sid, row.email, "unsubscribed"


def process_message(
    pub: Publication, conn: Connection, label: str, msg: Message, report: BounceReport
) -> None:
    """Recognise one message and act on it inside ``conn``'s transaction."""
    request = _unsubscribe_request(pub, conn, msg)
    if request is not None:
        sid, email, result = request
        report.events.append(Event(label, email, sid, "unsubscribe", result))
        report.suppressed += result == "unsubscribed"
        return
    failures = arf_complaint(msg) or dsn_failures(msg) or flufl_failures(msg)
    if not failures:
        report.warnings.append(f"{label}: not a bounce, complaint or unsubscribe request")
        return
    # Our messages have one recipient each: the VERP id is exact; the worst failure wins.
    worst = min(failures, key=lambda f: _SEVERITY[f.kind])
    message_id = _printable(str(msg.get("Message-ID", "")), 200)
    row, refusal = _verp_row(pub, conn, msg)
    if row is None:
        addresses = tuple(dict.fromkeys(_printable(f.email, 254) for f in failures if f.email))
        report.held.append(Held(label, message_id, worst.kind, addresses, refusal))
        return
    result = apply_failure(conn, worst, row, message_id)
    report.events.append(Event(label, row.email, row.id, worst.kind, result))
    report.suppressed += result.startswith("suppressed")


_SEVERITY = {"complaint": 0, "hard": 1, "soft": 2}


def _printable(text: str, limit: int) -> str:
    """``text`` of a report as it may be shown on the editor's terminal: a forgery's escape
    sequences and line breaks become ``?``, and it is cut at ``limit`` characters."""
    text = " ".join(text.split())[:limit]
    return "".join(c if c.isprintable() else "?" for c in text)


def _verp_row(pub: Publication, conn: Connection, msg: Message) -> tuple[Row[Any] | None, str]:
    """(the subscriber the report's one valid VERP address names, "") or (None, why the
    report is not applied). One query looks up every id the report claims; each mac is
    checked against the email address of the row that holds the id now."""
    claims = sorted(verp_claims(pub, msg))[:MAX_VERP_CLAIMS]
    if not claims:
        return None, "not sent to a valid VERP address of ours (it could be forged)"
    ids = {sid for sid, _ in claims}
    query = select(subscribers).where(subscribers.c.id.in_(ids))
    rows = {row.id: row for row in conn.execute(query)}
    valid = {
        sid: rows[sid]
        for sid, mac in claims
        if sid in rows and check_verp(pub, sid, rows[sid].email, mac)
    }
    if len(valid) > 1:
        listed = ", ".join(f"#{i}" for i in sorted(valid)[:5])
        return None, f"names the VERP addresses of several subscribers ({listed})"
    if valid:
        return next(iter(valid.values())), ""
    return None, _verp_refusal(claims, rows)


def _verp_refusal(claims: list[tuple[int, str]], rows: dict[int, Row[Any]]) -> str:
    """Why none of the report's VERP addresses verifies, in words for the editor."""
    sid, mac = claims[0]
    if sid not in rows:
        return f"its VERP address names #{sid}, who is no longer on the list"
    if len(mac) != VERP_MAC_HEX:
        return (
            f"its VERP address for #{sid} has the older form (a message sent before the "
            "mac covered the email address): not verified, check it by hand"
        )
    return (
        f"not sent to a valid VERP address of ours for #{sid} (a bad mac, or one made for "
        "the id's former holder; it could be forged)"
    )


def process_files(
    pub: Publication, store: Store, files: list[Path], *, dry_run: bool = False
) -> BounceReport:
    """Read every message of ``files`` and apply the rule (or only report, ``dry_run``)."""
    from .tokens import verify_secret

    verify_secret(store, pub)  # VERP addresses and unsubscribe mails are checked with it
    report = BounceReport()
    with store.engine.connect() as conn:
        transaction = conn.begin()
        try:
            for path in files:
                for label, msg in read_messages(Path(path)):
                    report.messages += 1
                    process_message(pub, conn, label, msg, report)
        except BaseException:
            transaction.rollback()
            raise
        if dry_run:
            transaction.rollback()
        else:
            transaction.commit()
    return report
