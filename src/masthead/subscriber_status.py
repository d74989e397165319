"""A subscriber's statuses, written once for the store, the CLI and the editor app.

Outside :mod:`masthead.store` on purpose: the CLI declares its ``--status`` choices when it
starts, and importing the store would load SQLAlchemy for every command (~0.25 s).
"""

SUBSCRIBER_STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
"""What a subscriber row's ``status`` holds; only ``active`` subscribers are mailed."""

LIST_STATUSES = (*SUBSCRIBER_STATUSES, "suppressed")
"""What the list can be filtered by: a row's status, or ``suppressed`` (the address is on
the suppression list, whatever its row's status)."""
