"""Text bound for mail headers, cleaned where both the email edition and the subscriber
store need it (a module of its own: the store's package imports SQLAlchemy, which a build
does not need)."""

from __future__ import annotations

from collections.abc import Callable

MAX_NAME_LENGTH = 200
"""The longest display name a subscriber may have, in characters once cleaned (the
sign-up form's limit): a longer one, a single word, made the To line of its email longer
than SMTP's 998 characters, and the server refused the message (``500 Line too long``).
The store refuses longer names; the sender cuts those stored before it did."""


def defuse_encoded_words(text: str, clean: Callable[[str], str]) -> str:
    """``text`` cleaned by ``clean`` so that no header can be made of it: the ``email`` API
    decodes RFC 2047 encoded words (``=?utf-8?q?x=0D=0ASubject:…?=``) in a display name or
    subject into real line breaks, so they are decoded here first, repeatedly, and cleaned
    again; what is left of ``=?`` is broken up so that nothing decodes again."""
    from email import policy

    value = clean(text)
    for _ in range(8):
        if "=?" not in value:  # nothing the header parser would decode
            break
        decoded = clean(str(policy.SMTP.header_factory("X-Name", value)))
        if decoded == value:
            break
        value = decoded
    else:  # a name that keeps decoding is not a name
        return ""
    return value.replace("=?", "= ?")
