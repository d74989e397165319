"""Email addresses: validation (``email-validator``) and the key one person is known by."""

from __future__ import annotations

from functools import lru_cache

from ..headers import defuse_encoded_words


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
    return defuse_encoded_words(name, _strip_controls) if name else ""
