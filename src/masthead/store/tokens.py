"""Signed tokens for the links and addresses in each subscriber's email.

One secret per publication, in ``.masthead/secret.key`` (32 random bytes, mode 0600,
created on first use); the environment variable ``MASTHEAD_SECRET`` overrides it (to share
one secret between the sending machine and the web server). The database keeps the
secret's fingerprint (:func:`verify_secret`), so a machine with another secret, which
would mail links no other machine accepts, refuses to start instead.

- Unsubscribe: ``<base_url>unsubscribe/<id>/<token>``, an HMAC-SHA256 over
  ``unsubscribe|<id>|<email in lower case>``; it never expires (old issues keep working).
- Confirm (double opt-in): ``<base_url>confirm/<id>/<token>``, where the token is
  ``<issued, base 36 seconds>.<mac>`` and the mac also covers the time; it lasts
  :data:`CONFIRM_MAX_AGE`.
- ``unsubscribe_mailto``: ``mailto:<From address>?subject=unsubscribe <id> <token>``.
- VERP return path: ``<local>+bounce-<id>-<12 hex>@<domain>`` of the From address, where the
  12 hex digits (48 bits) are a mac over ``verp|<id>|<email in lower case>``, so a bounce
  names its subscriber exactly and a forged one is ignored. The address is bound to the
  email address like the unsubscribe token: ids are reused (SQLite hands out the highest id
  again after a removal, ``masthead db restore`` rewinds them), and a former subscriber's
  old Return-Path must not name whoever holds the id now. Checking one needs the row
  (:func:`verp_claim`, then :func:`check_verp`); the older 8-hex form (a mac over the id
  only) is recognised by its shape and never verifies.

Binding the email address into the mac means a token stops working when the row's address
changes, and a token taken from one subscriber's email is refused for another id.
Comparisons are constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import socket
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from sqlalchemy import select

from .addresses import email_key

if TYPE_CHECKING:
    from ..model import Publication
    from ..store import Store

CONFIRM_MAX_AGE = 30 * 24 * 3600
"""Seconds a confirmation link stays valid (30 days)."""

_secrets: dict[Path, bytes] = {}


MIN_SECRET_BYTES = 16


def secret_key(pub: Publication) -> bytes:
    """The publication's signing secret (created on first use)."""
    env = os.environ.get("MASTHEAD_SECRET")
    if env:
        if len(env.encode("utf-8")) < MIN_SECRET_BYTES:
            from ..errors import StoreError

            raise StoreError(
                f"MASTHEAD_SECRET is too short ({len(env)} characters; at least "
                f"{MIN_SECRET_BYTES} bytes)",
                fix='make one with python3 -c "import secrets; print(secrets.token_urlsafe(48))"',
            )
        return env.encode("utf-8")
    path = pub.state_dir / "secret.key"
    cached = _secrets.get(path)
    if cached is not None:
        return cached
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write a temporary file, then link it into place: a second process racing us
        # never reads a half-written key, and whoever links first wins.
        tmp = path.with_name(f".secret.key.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_bytes()
    if len(key) < MIN_SECRET_BYTES:
        from ..errors import StoreError

        raise StoreError(
            "the signing secret is too short", path=path, fix="delete it to make a new one"
        )
    _secrets[path] = key
    return key


def secret_fingerprint(key: bytes) -> str:
    """What the database keeps of the secret: a MAC of a constant, which tells two secrets
    apart and gives nothing away about either."""
    return hmac.new(key, b"masthead secret fingerprint v1", hashlib.sha256).hexdigest()[:32]


SECRET_SETTING = "secret_fingerprint"


def verify_secret(store: Store, pub: Publication) -> None:
    """Make sure this machine signs with the secret the database's links are signed with.

    The first machine to use a database records its secret's fingerprint there. Every later
    one (``masthead serve`` on another web machine, ``masthead send`` on a sending machine)
    compares its own: a machine with another secret would mail unsubscribe links that the
    other machines answer with 403, or refuse the links they mailed. Raises
    :class:`~masthead.errors.SecretMismatch`; a machine that has no secret yet is refused
    before one is made for it."""
    from ..errors import SecretMismatch
    from ..store import dialect_insert, settings

    recorded = select(settings.c.value, settings.c.set_by, settings.c.set_at).where(
        settings.c.name == SECRET_SETTING
    )
    with store.read() as conn:
        row = conn.execute(recorded).first()
    has_own = bool(os.environ.get("MASTHEAD_SECRET")) or (pub.state_dir / "secret.key").exists()
    if row is not None and not has_own:
        raise SecretMismatch(
            f"this machine has no signing secret, and the links in the emails of this "
            f"database were signed with the secret of {row.set_by or 'another machine'}",
            fix=f"copy .masthead/secret.key from that machine into {pub.state_dir}/ (mode "
            "0600), or set MASTHEAD_SECRET to the value the other machines use",
        )
    mine = secret_fingerprint(secret_key(pub))
    if row is None:
        with store.begin() as conn:
            conn.execute(
                dialect_insert(conn.dialect.name, settings)
                .values(name=SECRET_SETTING, value=mine, set_by=socket.gethostname())
                .on_conflict_do_nothing()
            )
            row = conn.execute(recorded).one()  # ours, or another machine's that came first
    if not hmac.compare_digest(row.value, mine):
        source = "MASTHEAD_SECRET" if os.environ.get("MASTHEAD_SECRET") else "secret.key"
        raise SecretMismatch(
            f"this machine's signing secret ({source}) is not the one this database's links "
            f"are signed with (first used by {row.set_by or 'another machine'} on "
            f"{row.set_at:%Y-%m-%d})",
            fix="give every machine the same secret: the same MASTHEAD_SECRET, or a copy of "
            "that machine's .masthead/secret.key (docs/deploy.md, section 2)",
        )


_keyed: dict[bytes, hmac.HMAC] = {}


def _mac(pub: Publication, message: str) -> bytes:
    key = secret_key(pub)
    base = _keyed.get(key)
    if base is None:  # keying HMAC once and copying it is twice as fast per token
        base = _keyed[key] = hmac.new(key, digestmod=hashlib.sha256)
    mac = base.copy()
    mac.update(message.encode("utf-8"))
    return mac.digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def make_token(
    pub: Publication, purpose: str, subscriber_id: int, email: str, *, issued: int | None = None
) -> str:
    """A URL-safe token for ``purpose`` ("unsubscribe", "confirm") and one subscriber.

    Confirm tokens carry the time they were issued (``issued``, default now)."""
    base = f"{purpose}|{int(subscriber_id)}|{email_key(email)}"
    if purpose == "confirm":
        stamp = _base36(int(time.time()) if issued is None else issued)
        return f"{stamp}.{_b64(_mac(pub, f'{base}|{stamp}')[:18])}"
    return _b64(_mac(pub, base)[:18])


def check_token(
    pub: Publication,
    purpose: str,
    subscriber_id: int,
    email: str,
    token: str,
    *,
    max_age: int = CONFIRM_MAX_AGE,
    now: float | None = None,
) -> bool:
    """Whether ``token`` was made by :func:`make_token` for exactly these arguments (and,
    for confirm tokens, is younger than ``max_age`` seconds)."""
    if not isinstance(token, str) or len(token) > 64:
        return False
    if purpose == "confirm":
        stamp, dot, _ = token.partition(".")
        if not dot or not re.fullmatch(r"[0-9a-z]{1,10}", stamp):
            return False
        issued = int(stamp, 36)
        expected = make_token(pub, purpose, subscriber_id, email, issued=issued)
        age = (time.time() if now is None else now) - issued
        fresh = -300 <= age <= max_age
        return hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace")) and fresh
    expected = make_token(pub, purpose, subscriber_id, email)
    return hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace"))


def token_issued(token: str) -> int | None:
    """When a confirm token was issued (Unix seconds), or None if it carries no time."""
    stamp, dot, _ = token.partition(".")
    if not dot or not re.fullmatch(r"[0-9a-z]{1,10}", stamp):
        return None
    return int(stamp, 36)


def unsubscribe_url(pub: Publication, subscriber_id: int, email: str) -> str:
    """The one-click unsubscribe link (GET: a confirmation page; POST: unsubscribes)."""
    token = make_token(pub, "unsubscribe", subscriber_id, email)
    return f"{pub.config.base_url}unsubscribe/{int(subscriber_id)}/{token}"


def confirm_url(pub: Publication, subscriber_id: int, email: str) -> str:
    """The double opt-in link in the confirmation email."""
    token = make_token(pub, "confirm", subscriber_id, email)
    return f"{pub.config.base_url}confirm/{int(subscriber_id)}/{token}"


def list_address(pub: Publication) -> tuple[str, str] | None:
    """(local part, domain) of the configured From address, or None if there is none."""
    return _split_address(pub.config.email.from_)


@lru_cache(maxsize=64)
def _split_address(from_: str) -> tuple[str, str] | None:
    from email.utils import parseaddr

    _, addr = parseaddr(from_)
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        return None
    return local, domain


def unsubscribe_mailto(pub: Publication, subscriber_id: int, email: str) -> str | None:
    """``mailto:`` for the List-Unsubscribe header: a mail to the From address with the
    subject ``unsubscribe <id> <token>`` (``masthead bounces`` acts on such mails);
    None when no From address is configured."""
    parts = list_address(pub)
    if parts is None:
        return None
    token = make_token(pub, "unsubscribe", subscriber_id, email)
    subject = quote(f"unsubscribe {int(subscriber_id)} {token}")
    return f"mailto:{parts[0]}@{parts[1]}?subject={subject}"


VERP_MAC_HEX = 12
"""Hex digits of the VERP mac (48 bits): short, since mail local parts allow 64 characters,
and enough, since a forger can only try guesses by mailing them to us."""

VERP_LOCAL_MAX = 64
"""The longest local part RFC 5321 requires a mail server to accept."""


def _verp_mac(pub: Publication, subscriber_id: int, email: str) -> str:
    message = f"verp|{int(subscriber_id)}|{email_key(email)}"
    return _mac(pub, message).hex()[:VERP_MAC_HEX]


def verp_address(pub: Publication, subscriber_id: int, email: str) -> str | None:
    """The envelope sender (Return-Path) for one subscriber's message:
    ``<local>+bounce-<id>-<mac>@<domain>``, the mac bound to the id and to ``email``, the
    subscriber's address; None when no From address is configured. One HMAC: it is made
    for every message of a send."""
    parts = list_address(pub)
    if parts is None:
        return None
    local, domain = parts
    return f"{local}+bounce-{int(subscriber_id)}-{_verp_mac(pub, subscriber_id, email)}@{domain}"


def verp_local_part_length(pub: Publication, subscriber_id: int = 10**10 - 1) -> int:
    """Characters in the local part of the VERP address for ``subscriber_id`` (by default a
    10-digit id, more than any list reaches); over :data:`VERP_LOCAL_MAX`, a strict mail
    server may refuse the sender. 0 when no From address is configured."""
    parts = list_address(pub)
    if parts is None:
        return 0
    return len(f"{parts[0]}+bounce-{int(subscriber_id)}-") + VERP_MAC_HEX


_VERP = re.compile(
    r"^(?P<local>.+)\+bounce-(?P<id>\d{1,18})-(?P<mac>[0-9a-f]{12}|[0-9a-f]{8})@(?P<domain>.+)$"
)


def verp_claim(pub: Publication, address: str) -> tuple[int, str] | None:
    """(subscriber id, mac) of a VERP address built on our From address, NOT yet verified
    (:func:`check_verp` does it with the subscriber's email address); None when ``address``
    is not one of ours: wrong shape, or another From address."""
    match = _VERP.match(address.strip().strip("<>").lower())
    ours = list_address(pub)
    if not match or ours is None:
        return None
    # Another publication's VERP address (a copied secret, the same ids in another
    # database) names another person: only our own From address counts.
    if (match["local"], match["domain"]) != (ours[0].lower(), ours[1].lower()):
        return None
    return int(match["id"]), match["mac"]


def check_verp(pub: Publication, subscriber_id: int, email: str, mac: str) -> bool:
    """Whether ``mac`` (of :func:`verp_claim`) was made for this id and this email address.
    A mac of the older form (8 hex digits, over the id only) never verifies: it would let
    the id's former holder speak for its present one."""
    expected = _verp_mac(pub, subscriber_id, email)
    return hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace"))


def parse_verp(pub: Publication, address: str, email: str) -> int | None:
    """The subscriber id of ``address`` if it is the VERP address made for that id and
    ``email``, else None."""
    claim = verp_claim(pub, address)
    if claim is None or not check_verp(pub, claim[0], email, claim[1]):
        return None
    return claim[0]
