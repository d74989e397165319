"""Email addresses: validation (``email-validator``) and the key one person is known by."""

from __future__ import annotations

import re
from functools import lru_cache

from ..headers import MAX_NAME_LENGTH, defuse_encoded_words

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_PLAIN_ADDRESS = re.compile(
    rf"({_ATEXT}+(?:\.{_ATEXT}+)*)@"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z]|[A-Za-z0-9][A-Za-z0-9-]{0,61}[A-Za-z]))"
)
"""An address email-validator accepts as it is but for the domain's case: an ASCII
dot-atom before the @, host-name labels after it, a top-level label ending in a letter.
Anything else (IDNA, quoted parts, special-use names, very long ones) is left to it."""

_SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")


def _plain(text: str) -> str | None:
    """The normalised form of a common ASCII address without email-validator (50× faster:
    a million-row import spends its time here), or None to ask email-validator."""
    if len(text) > 254 or "--" in text.rpartition("@")[2]:
        return None
    m = _PLAIN_ADDRESS.fullmatch(text)
    if m is None or len(m.group(1)) > 64:
        return None
    domain = m.group(2).lower()
    if domain.rpartition(".")[2] in _SPECIAL_USE:
        return None
    return f"{m.group(1)}@{domain}"


class InvalidAddress(ValueError):
    """An address ``email-validator`` refuses; the message says why."""


@lru_cache(maxsize=4096)
def normalise_email(raw: str) -> str:
    """The address as stored: trimmed, domain lower-cased and IDNA-normalised.

    Syntax only (no DNS look-up: imports must not depend on the network). Raises
    :class:`InvalidAddress` with email-validator's reason.
    """
    from email_validator import EmailNotValidError, validate_email

    text = raw.strip()
    if not text:
        raise InvalidAddress("the address is empty")
    plain = _plain(text)
    if plain is not None:
        return plain
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None


def email_key(email: str) -> str:
    """The de-duplication key: the address in lower case (``A@x.org`` is ``a@x.org``)."""
    return email.strip().lower()


JOINERS = {"\u200c", "\u200d"}
"""Zero-width non-joiner and joiner: format characters that Persian (and other scripts')
names need to be spelled right; every other format character (bidi overrides…) goes."""


def _strip_controls(name: str) -> str:
    import unicodedata

    chars = [
        " " if unicodedata.category(c)[0] in "CZ" and c != " " and c not in JOINERS else c
        for c in name
    ]
    return " ".join("".join(chars).split())


def clean_name(name: str | None) -> str:
    """A display name safe for headers and tables: line breaks and other control,
    format (bidi overrides) or separator characters (U+2028 too) become spaces; runs of
    spaces collapse; encoded words cannot decode into a header (:func:`defuse_encoded_words`)."""
    if not name:
        return ""
    if name.isascii() and name.isprintable() and "=?" not in name:
        return " ".join(name.split())  # the common case, as the full cleaning would leave it
    return defuse_encoded_words(name, _strip_controls)


def checked_name(name: str | None) -> str:
    """:func:`clean_name`, refusing (``ValueError``, saying why) a name over
    :data:`MAX_NAME_LENGTH` characters: every way onto the list (add, import, the editor's
    app) goes through here."""
    cleaned = clean_name(name)
    if len(cleaned) > MAX_NAME_LENGTH:
        raise ValueError(
            f"the name is {len(cleaned):,} characters long ({cleaned[:40]!r}…); "
            f"the most is {MAX_NAME_LENGTH}"
        )
    return cleaned
