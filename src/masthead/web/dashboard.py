"""What the dashboard shows: issues and their state, subscriber figures, send reports,
and two small charts drawn as inline SVG on the server (no chart library, no script)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup, escape
from sqlalchemy import func, select

from ..content import load_issue_config
from ..errors import MastheadError
from ..model import Publication
from ..store import Store, consent_events, outbox, sends


@dataclass
class IssueRow:
    slug: str
    label: str
    date: str
    title: str
    state: str  # draft, built, sending, paused, sent
    send: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def _manifest(pub: Publication) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((pub.site_dir / "manifest.json").read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return {e.get("slug"): e for e in data.get("issues", []) if isinstance(e, dict)}


def issue_rows(pub: Publication, store: Store) -> list[IssueRow]:
    """Every issue, newest first, with its state: draft (never built), built, sending,
    paused or sent (from the manifest and the sends/outbox tables)."""
    built = _manifest(pub)
    with store.read() as conn:
        send_rows = {r.issue_slug: r for r in conn.execute(select(sends))}
        by_state: dict[str, dict[str, int]] = {}
        for slug, state, n in conn.execute(
            select(outbox.c.issue_slug, outbox.c.state, func.count()).group_by(
                outbox.c.issue_slug, outbox.c.state
            )
        ):
            by_state.setdefault(slug, {})[state] = int(n)
    rows = []
    for slug in pub.issue_slugs:
        try:
            c = load_issue_config(pub, slug)
        except MastheadError as exc:
            rows.append(IssueRow(slug, slug, "", "", "draft", error=exc.message))
            continue
        state = "built" if slug in built else "draft"
        send = send_rows.get(slug)
        counts = by_state.get(slug, {})
        if send is not None:
            if send.finished_at is not None:
                state = "sent"
            elif send.paused:
                state = "paused"
            else:
                state = "sending"
        rows.append(
            IssueRow(
                slug,
                f"Vol. {c.volume}, no. {c.number}",
                c.date.isoformat(),
                c.title or "",
                state,
                counts,
            )
        )
    rows.sort(key=lambda r: (r.date, r.slug), reverse=True)
    return rows


def last_send(store: Store) -> dict[str, Any] | None:
    """The most recently started send: its issue, times and counts by state."""
    with store.read() as conn:
        row = conn.execute(
            select(sends)
            .where(sends.c.started_at.is_not(None))
            .order_by(sends.c.started_at.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        states = dict(
            conn.execute(
                select(outbox.c.state, func.count())
                .where(outbox.c.issue_slug == row.issue_slug)
                .group_by(outbox.c.state)
            ).all()
        )
    return {
        "slug": row.issue_slug,
        "started": row.started_at,
        "finished": row.finished_at,
        "paused": bool(row.paused),
        "total": row.total,
        "states": states,
    }


JOINED = {"confirm", "import", "resubscribe"}
LEFT = {"unsubscribe", "suppress"}
BOUNCED = {"bounce", "complaint"}


def weekly_changes(store: Store, weeks: int = 12, now: datetime | None = None) -> list[dict]:
    """Per week (Monday first), the addresses that joined (confirmed, or added as already
    confirmed), unsubscribed (or were suppressed) and bounced (or complained)."""
    now = now or datetime.now(UTC)
    start = (now - timedelta(days=now.weekday(), weeks=weeks - 1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    counts: dict[int, Counter[str]] = {i: Counter() for i in range(weeks)}
    with store.read() as conn:
        for action, detail, at in conn.execute(
            select(consent_events.c.action, consent_events.c.detail, consent_events.c.at).where(
                consent_events.c.at >= start
            )
        ):
            if action == "subscribe" and (detail or "").startswith("consent obtained before"):
                action = "import"  # added as already confirmed: joined now
            index = (at - start).days // 7
            if not 0 <= index < weeks:
                continue
            if action in JOINED:
                counts[index]["joined"] += 1
            elif action in LEFT:
                counts[index]["unsubscribed"] += 1
            elif action in BOUNCED:
                counts[index]["bounced"] += 1
    return [
        {"week": (start + timedelta(weeks=i)).date().isoformat(), **counts[i]} for i in range(weeks)
    ]


# ---- charts -----------------------------------------------------------------------------

SERIES = [("joined", "#1d6b3a"), ("unsubscribed", "#8a4b00"), ("bounced", "#a3162a")]


def subscriber_chart(weeks: list[dict]) -> Markup:
    """A line chart of joined / unsubscribed / bounced per week, with a text alternative."""
    w, h, pad = 560, 200, 34
    top = max([1] + [wk.get(k, 0) for wk in weeks for k, _ in SERIES])
    n = max(len(weeks) - 1, 1)

    def xy(i: int, v: int) -> str:
        x = pad + i * (w - 2 * pad) / n
        y = h - pad - v * (h - 2 * pad) / top
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#666"/>',
        f'<text x="{pad - 6}" y="{pad + 4}" text-anchor="end" font-size="11" fill="#333">'
        f"{top}</text>",
        f'<text x="{pad - 6}" y="{h - pad + 4}" text-anchor="end" font-size="11" '
        'fill="#333">0</text>',
    ]
    for i, wk in enumerate(weeks):
        if i % max(1, len(weeks) // 6) == 0:
            x = pad + i * (w - 2 * pad) / n
            parts.append(
                f'<text x="{x:.1f}" y="{h - pad + 16}" text-anchor="middle" font-size="11" '
                f'fill="#333">{escape(wk["week"][5:])}</text>'
            )
    for k, (key, colour) in enumerate(SERIES):
        points = " ".join(xy(i, wk.get(key, 0)) for i, wk in enumerate(weeks))
        dash = ' stroke-dasharray="5 3"' if k == 1 else (' stroke-dasharray="2 2"' if k else "")
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        lx = pad + k * 150
        parts.append(
            f'<line x1="{lx}" y1="12" x2="{lx + 20}" y2="12" stroke="{colour}" '
            f'stroke-width="2"{dash}/><text x="{lx + 26}" y="16" font-size="12" '
            f'fill="#222">{key}</text>'
        )
    total = {key: sum(wk.get(key, 0) for wk in weeks) for key, _ in SERIES}
    label = (
        f"Subscribers over the last {len(weeks)} weeks: {total['joined']} joined, "
        f"{total['unsubscribed']} unsubscribed, {total['bounced']} bounced"
    )
    return Markup(
        f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>{''.join(parts)}</svg>"
    )


DELIVERY = [
    ("sent", "#1d6b3a"),
    ("failed", "#a3162a"),
    ("unknown", "#6b4a1d"),
    ("suppressed", "#555"),
    ("pending", "#1d4e6b"),
    ("sending", "#4a6b8a"),
]


def delivery_chart(rows: list[IssueRow]) -> Markup:
    """One stacked bar per sent issue: messages sent, failed, unknown, suppressed, waiting."""
    sent = [r for r in rows if r.send][:8]
    if not sent:
        return Markup("")
    w, bar, gap, left = 560, 18, 10, 90
    h = 30 + len(sent) * (bar + gap)
    parts = []
    for k, (state, colour) in enumerate(DELIVERY):
        lx = left + k * 78
        parts.append(
            f'<rect x="{lx}" y="4" width="12" height="12" fill="{colour}"/>'
            f'<text x="{lx + 16}" y="14" font-size="11" fill="#222">{state}</text>'
        )
    descriptions = []
    for i, r in enumerate(sent):
        y = 28 + i * (bar + gap)
        total = sum(r.send.values()) or 1
        x = float(left)
        parts.append(
            f'<text x="{left - 6}" y="{y + 13}" text-anchor="end" font-size="12" '
            f'fill="#222">{escape(r.slug)}</text>'
        )
        for state, colour in DELIVERY:
            n = r.send.get(state, 0)
            if not n:
                continue
            width = (w - left - 10) * n / total
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{bar}" fill="{colour}">'
                f"<title>{escape(r.slug)}: {n} {state}</title></rect>"
            )
            x += width
        descriptions.append(
            f"{r.slug}: " + ", ".join(f"{n} {s}" for s, n in sorted(r.send.items()))
        )
    label = "Delivery per issue. " + "; ".join(descriptions)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>{''.join(parts)}</svg>"
    )
