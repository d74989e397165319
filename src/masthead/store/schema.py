"""The tables, declared once with SQLAlchemy Core.

Subscribers and their consent history, the global suppression list, and the state of each
send (one ``outbox`` row per issue and subscriber, created before the first message goes
out). Every timestamp is timezone-aware UTC (:class:`UTCDateTime`).

This is the shape of the *current* schema version; :mod:`masthead.store.migrations` brings an
older database up to it, step by step, without ever dropping data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData()

CONSENT_ACTIONS = (
    "import",
    "subscribe",
    "confirm",
    "unsubscribe",
    "suppress",
    "bounce",
    "complaint",
    "resubscribe",
)
CONSENT_SOURCES = ("import", "form", "cli", "email", "api")
SUPPRESSION_REASONS = ("unsubscribed", "hard-bounce", "complaint", "manual")
OUTBOX_STATES = ("pending", "sending", "sent", "failed", "unknown", "suppressed")
BOUNCE_KINDS = ("hard", "soft", "complaint")


def utcnow() -> datetime:
    """Now, timezone-aware UTC (what every timestamp column holds)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always hands back aware UTC datetimes.

    SQLite has no time zone type: values are converted to UTC before they are stored, so
    string comparison in SQL (``next_attempt_at <= :now``) orders them correctly, and the
    time zone is put back when they are read. Naive datetimes are refused: they are bugs.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"timestamps must be timezone-aware datetimes, got {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _created() -> Column[datetime]:
    return Column("created_at", UTCDateTime(), nullable=False, default=utcnow)


schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", UTCDateTime(), nullable=False, default=utcnow),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", Text, nullable=False),  # as given, normalised by email-validator
    Column("email_key", Text, nullable=False, unique=True),  # lower case: one person once
    Column("name", Text, nullable=False, default=""),
    Column("language", Text, nullable=True),
    Column("status", Text, nullable=False, default="pending"),
    _created(),
    Column("confirmed_at", UTCDateTime(), nullable=True),
    Column("soft_bounces", Integer, nullable=False, default=0),
    Column("updated_at", UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow),
    # Never hand a removed subscriber's id to the next one (SQLite reuses the highest id
    # without AUTOINCREMENT): old links and bounce addresses name an id. Only tables created
    # from now on get it; the VERP mac's email binding covers older databases.
    sqlite_autoincrement=True,
)
Index("ix_subscribers_status", subscribers.c.status)

consent_events = Table(
    "consent_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False),
    Column("action", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("ip", Text, nullable=True),
    Column("detail", Text, nullable=True),
    Column("at", UTCDateTime(), nullable=False, default=utcnow),
)
Index("ix_consent_events_subscriber", consent_events.c.subscriber_id)

suppressions = Table(
    "suppressions",
    metadata,
    Column("email_key", Text, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("at", UTCDateTime(), nullable=False, default=utcnow),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_slug", Text, nullable=False),
    Column("subscriber_id", Integer, nullable=False),
    Column("email", Text, nullable=False),
    Column("name", Text, nullable=False, default=""),
    Column("language", Text, nullable=True),
    Column("state", Text, nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("claimed_by", Text, nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("last_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("message_id", Text, nullable=True),
    _created(),
    Column("sent_at", UTCDateTime(), nullable=True),
    UniqueConstraint("issue_slug", "subscriber_id", name="uq_outbox_issue_subscriber"),
)
Index("ix_outbox_issue_state_next", outbox.c.issue_slug, outbox.c.state, outbox.c.next_attempt_at)
# What a sender claims next: the pending rows of one issue in id order (a partial index, so a
# claim from an outbox of a million rows reads a few hundred index entries, not a sort).
pending = outbox.c.state == "pending"
outbox_pending = Index(
    "ix_outbox_pending",
    outbox.c.issue_slug,
    outbox.c.id,
    postgresql_where=pending,
    sqlite_where=pending,
)

sends = Table(
    "sends",
    metadata,
    Column("issue_slug", Text, primary_key=True),
    _created(),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("paused", Integer, nullable=False, default=0),
    Column("total", Integer, nullable=False, default=0),
)

bounce_events = Table(
    "bounce_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", Integer, nullable=True),
    Column("email", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("at", UTCDateTime(), nullable=False, default=utcnow),
    # The Message-ID of the bounce report, so reading the same mailbox twice counts once.
    Column("message_id", Text, nullable=True),
)
Index("ix_bounce_events_subscriber", bounce_events.c.subscriber_id)
Index("ix_bounce_events_message_id", bounce_events.c.message_id)

rate_limits = Table(
    "rate_limits",
    metadata,
    # A rate shared by every sender of the database (``[smtp] rate_per_minute``), as the
    # generic cell rate algorithm keeps it: the time, in seconds since the epoch on the
    # database's clock, at which the next message may start. A sender books a run of
    # slots by moving it forward (see masthead.deliver.ratelimit.SharedRate).
    Column("name", Text, primary_key=True),
    Column("next_at", Float, nullable=False),
)

settings = Table(
    "settings",
    metadata,
    # Facts about the database that every machine using it must agree on, one row each:
    # ``secret_fingerprint`` (see masthead.store.tokens.verify_secret), and who set it when.
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("set_by", Text, nullable=False, default=""),
    Column("set_at", UTCDateTime(), nullable=False, default=utcnow),
)

send_editions = Table(
    "send_editions",
    metadata,
    # The email of one send, per reader language, as it was when the send started: every
    # reader of the send gets this issue, whatever is edited meanwhile (and on whichever
    # machine a worker runs). ``layout`` is JSON: the template's segments in order, each
    # ["b", length] (static bytes, taken from ``body`` in turn) or ["s", slot name].
    Column("issue_slug", Text, primary_key=True),
    Column("language", Text, primary_key=True),
    Column("subject", Text, nullable=False),
    Column("layout", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("size", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
)
