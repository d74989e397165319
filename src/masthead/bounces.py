"""Bounces, complaints and mailed unsubscribe requests: ``masthead bounces DIR FILE…``.

Reads delivery status notifications (RFC 3464 DSNs), non-standard bounces (recognised
by ``flufl.bounce``, Mailman's library), feedback reports (RFC 5965 ARF: spam
complaints) and the mails of the List-Unsubscribe ``mailto:`` (subject
``unsubscribe <id> <token>``), one message per ``.eml`` file or many in an mbox.

Mapping to a subscriber: the bounce is addressed to the VERP return path of the message
that failed (``<local>+bounce-<id>-<mac>@<domain>``), whose signed id names the subscriber
exactly; without one, the failed addresses the report lists are looked up on the list.

The rule:

- a hard bounce (status 5.x.x, or ``Action: failed``, or a permanent failure per
  flufl.bounce) suppresses the address at once (reason ``hard-bounce``);
- soft bounces (status 4.x.x, ``Action: delayed``) count at most once per day (a mail
  server sends several delay warnings for one message); the third day of soft bounces
  with no successful delivery in between suppresses the address. A new confirmation, or
  the sending engine recording a delivery (:func:`record_delivery`), resets the count;
- a complaint suppresses at once (reason ``complaint``);
- each bounce report is counted once, by its Message-ID, however often it is read.
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_binary_file
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select, update

from .errors import MastheadError
from .store import bounce_events, subscribers
from .store import subscriber_list as subs
from .store.addresses import email_key
from .store.schema import utcnow
from .store.tokens import check_token, parse_verp

if TYPE_CHECKING:
    from .model import Publication
    from .store import Store

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


@dataclass
class BounceReport:
    messages: int = 0
    events: list[Event] = field(default_factory=list)
    suppressed: int = 0
    warnings: list[str] = field(default_factory=list)


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


def arf_complaint(msg: Message) -> list[Failure]:
    """The complaining recipient of an RFC 5965 feedback report, if ``msg`` is one."""
    if msg.get_content_type() != "multipart/report":
        return []
    if (msg.get_param("report-type") or "").lower() != "feedback-report":
        return []
    original: Message | None = None
    feedback: Message | None = None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/feedback-report":
            payload = part.get_payload()
            feedback = payload[0] if isinstance(payload, list) and payload else None
        elif ctype in ("message/rfc822", "text/rfc822-headers") and original is None:
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                original = payload[0]
            elif isinstance(payload, str):
                from email import message_from_string

                original = message_from_string(payload, policy=compat32)
    addresses: list[str] = []
    if original is not None:
        addresses += [a for _, a in getaddresses([str(original.get("Return-Path", ""))])]
        addresses += [a for _, a in getaddresses([str(original.get("To", ""))])]
    if feedback is not None and feedback.get("Original-Rcpt-To"):
        addresses.append(str(feedback["Original-Rcpt-To"]))
    kind = str(feedback.get("Feedback-Type", "abuse")) if feedback is not None else "abuse"
    return [Failure(a, "complaint", f"feedback report: {kind}") for a in addresses if a]


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


def verp_subscriber(pub: Publication, msg: Message) -> int | None:
    """The subscriber named by the VERP address the report was sent to, if any."""
    for header in _VERP_HEADERS:
        for value in msg.get_all(header) or []:
            for _, addr in getaddresses([str(value)]):
                found = parse_verp(pub, addr)
                if found is not None:
                    return found
    return None


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


def _already_seen(conn: Connection, message_id: str, subscriber_id: int | None, email: str) -> bool:
    if not message_id:
        return False
    query = select(bounce_events.c.id).where(bounce_events.c.message_id == message_id)
    if subscriber_id is not None:
        query = query.where(bounce_events.c.subscriber_id == subscriber_id)
    else:
        query = query.where(bounce_events.c.email == email)
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


def apply_failure(
    conn: Connection, failure: Failure, subscriber_id: int | None, message_id: str
) -> str:
    """Record one failure and apply the rule; return what happened, in words."""
    row = subs.get(conn, subscriber_id) if subscriber_id is not None else None
    if row is None:
        row = subs.find(conn, failure.email)
    sid = row.id if row is not None else None
    email = row.email if row is not None else failure.email
    if _already_seen(conn, message_id, sid, email):
        return "already recorded"
    counted_today = sid is not None and failure.kind == "soft" and _soft_bounced_today(conn, sid)
    conn.execute(
        bounce_events.insert().values(
            subscriber_id=sid,
            email=email,
            kind=failure.kind,
            detail=failure.detail,
            at=utcnow(),
            message_id=message_id or None,
        )
    )
    if row is None:
        return "not on the list"
    if subs.suppression_reason(conn, email):
        return "already suppressed"
    if failure.kind == "complaint":
        subs.suppress_address(conn, email, "complaint", source="email", detail=failure.detail)
        return "suppressed (complaint)"
    if failure.kind == "hard":
        subs.suppress_address(conn, email, "hard-bounce", source="email", detail=failure.detail)
        return "suppressed (hard bounce)"
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
    verp_id = verp_subscriber(pub, msg)
    if verp_id is not None:
        # Our messages have one recipient each: the VERP id is exact; the worst failure wins.
        order = {"complaint": 0, "hard": 1, "soft": 2}
        failures = [min(failures, key=lambda f: order[f.kind])]
    message_id = str(msg.get("Message-ID", "")).strip()
    for failure in failures:
        result = apply_failure(conn, failure, verp_id, message_id)
        sid = verp_id
        if sid is None:
            row = subs.find(conn, failure.email)
            sid = row.id if row is not None else None
        report.events.append(Event(label, failure.email, sid, failure.kind, result))
        report.suppressed += result.startswith("suppressed")


def process_files(
    pub: Publication, store: Store, files: list[Path], *, dry_run: bool = False
) -> BounceReport:
    """Read every message of ``files`` and apply the rule (or only report, ``dry_run``)."""
    from .store.tokens import verify_secret

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


def suppress_hard_bounce(store: Store, email: str, detail: str) -> None:
    """For the sending engine: a 5xx answer at RCPT/DATA is a hard bounce."""
    with store.begin() as conn:
        apply_failure(conn, Failure(email_key(email), "hard", detail), None, "")
