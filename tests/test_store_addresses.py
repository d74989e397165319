"""Address checks: the fast path for plain ASCII addresses agrees with email-validator."""

from __future__ import annotations

import random

import pytest
from email_validator import EmailNotValidError, validate_email

from masthead.store.addresses import InvalidAddress, _plain, clean_name, normalise_email

AWKWARD = [
    ".",
    "-",
    "_",
    "+",
    "'",
    "!",
    "~",
    "..",
    "--",
    "xn--",
    "é",
    " ",
    '"',
    "@",
    "[",
    "]",
    "test",
    "local",
    "c0m",
    "1",
    "x" * 63,
    "y" * 70,
]
PIECES = [*AWKWARD, *(["a", "Z", "mail", "0", "org", "ORG", "news"] * 6)]


def _validator(text: str) -> str | None:
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


@pytest.mark.parametrize("seed", range(4))
def test_the_fast_path_agrees_with_email_validator(seed: int) -> None:
    """Random addresses made of the awkward pieces: wherever the fast path answers, it
    answers what email-validator does (it only declines, never disagrees)."""
    rng = random.Random(seed)
    answered = 0
    for _ in range(4000):
        local = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 4)))
        labels = [
            "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 3)))
            for _ in range(rng.randint(1, 3))
        ]
        text = f"{local}@{'.'.join(labels)}"
        fast = _plain(text)
        if fast is not None:
            answered += 1
            assert fast == _validator(text), text
    assert answered > 250  # the fast path does take the common shapes


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("Ada.Lovelace@Example.ORG", "Ada.Lovelace@example.org"),
        ("o'brien+news@mail.example.co.uk", "o'brien+news@mail.example.co.uk"),
        ("a@xn--80ak6aa92e.com", "a@аррӏе.com"),  # IDNA: email-validator's answer
        ("  reader@example.org ", "reader@example.org"),
    ],
)
def test_normalised_addresses(raw: str, stored: str) -> None:
    assert normalise_email(raw) == stored


@pytest.mark.parametrize(
    "raw", ["a..b@example.org", "a@example.test", "a@localhost", "a@x-.org", "a@1.23", ""]
)
def test_invalid_addresses_are_refused(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        normalise_email(raw)


def test_plain_names_are_cleaned_as_the_full_cleaning_would() -> None:
    assert clean_name("  Ada   Lovelace ") == "Ada Lovelace"
    assert clean_name("Ada\r\nBcc: x@example.org") == "Ada Bcc: x@example.org"
    assert clean_name("=?utf-8?q?x=0D=0ASubject:_hi?=") == "x Subject: hi"
    assert clean_name("مریم\u200cمیرزاخانی\u202e") == "مریم\u200cمیرزاخانی"
