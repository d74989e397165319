"""The editor's login: a scrypt password hash, a signed session cookie, CSRF tokens.

- The password hash (``scrypt$<n>$<r>$<p>$<salt>$<key>``, base64) comes from the environment
  variable MASTHEAD_ADMIN_PASSWORD_HASH or ``[serve] admin_password_hash``; ``masthead serve
  --hash-password`` makes one. The password itself is never stored.
- The session is a cookie signed with the publication's secret (:mod:`masthead.store.tokens`,
  an HMAC through itsdangerous): HttpOnly, SameSite=Strict, Secure over HTTPS, limited to the
  ``/admin`` path, valid :data:`SESSION_MAX_AGE` seconds. Logging out ends every session
  (``.masthead/admin-sessions`` counts the generations), so a copied cookie dies with it.
  Nothing of a session is kept in memory: any instance of ``masthead serve`` that shares
  the secret and the publication folder accepts the cookie, and a log-out on one ends the
  sessions on all of them (each reads the generation file on every request).
- Every session, even before login, carries a random CSRF token; every form has it in a
  hidden field (scripts send it in the ``X-CSRF-Token`` header) and every POST is refused
  without it. Logging in issues a new token (a token seen before login is no use after).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ..model import Publication

COOKIE = "masthead_admin"
SESSION_MAX_AGE = 12 * 3600
"""Seconds a login lasts (12 hours)."""
ENV_HASH = "MASTHEAD_ADMIN_PASSWORD_HASH"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``, to paste into ``[serve] admin_password_hash``."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time; False for a malformed hash)."""
    try:
        scheme, n, r, p, salt, key = stored.strip().split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def configured_hash(pub: Publication) -> str:
    """The password hash in force: the environment variable, else ``masthead.toml``."""
    return os.environ.get(ENV_HASH) or pub.config.serve.admin_password_hash


@dataclass
class Session:
    """What the cookie holds: the CSRF token, whether its holder logged in, and the
    generation of logins it belongs to (logging out starts a new one)."""

    csrf: str
    user: bool = False
    epoch: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"csrf": self.csrf, "user": self.user, "epoch": self.epoch}


class Sessions:
    """Reads and writes the signed session cookie."""

    def __init__(self, pub: Publication) -> None:
        from ..store.tokens import secret_key

        self.pub = pub
        self.signer = URLSafeTimedSerializer(secret_key(pub), salt="masthead-admin-session")

    def load(self, request: Request) -> Session | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self.signer.loads(raw, max_age=SESSION_MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
            return None
        user = bool(data.get("user")) and data.get("epoch") == self.epoch()
        return Session(csrf=data["csrf"], user=user, epoch=self.epoch())

    def new(self, *, user: bool = False) -> Session:
        return Session(csrf=secrets.token_urlsafe(24), user=user, epoch=self.epoch())

    @property
    def _epoch_file(self) -> Any:
        return self.pub.state_dir / "admin-sessions"

    def epoch(self) -> int:
        """The current generation of logins (``.masthead/admin-sessions``)."""
        try:
            return int(self._epoch_file.read_text("ascii").strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def end_all(self) -> None:
        """Log out every session (a copied cookie stops working too)."""
        self._epoch_file.parent.mkdir(parents=True, exist_ok=True)
        # A name no other process uses, on this machine or another sharing the folder.
        tmp = self._epoch_file.with_name(f".admin-sessions.{secrets.token_hex(8)}")
        tmp.write_text(str(self.epoch() + 1), "ascii")
        tmp.replace(self._epoch_file)

    def save(self, request: Request, response: Response, session: Session) -> None:
        secure = self.pub.config.serve.secure_cookie
        if secure is None:
            secure = request.url.scheme == "https"
        response.set_cookie(
            COOKIE,
            self.signer.dumps(session.to_dict()),
            max_age=SESSION_MAX_AGE,
            path="/admin",
            httponly=True,
            samesite="strict",
            secure=secure,
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/admin")


def csrf_ok(session: Session | None, sent: str | None) -> bool:
    """Whether the token sent with a POST is this session's (constant-time)."""
    if session is None or not sent:
        return False
    return hmac.compare_digest(session.csrf.encode(), sent.encode())
