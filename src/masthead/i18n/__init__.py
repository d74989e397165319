"""The words Masthead writes itself ("Inside This Issue", "continued", …), per language,
and dates in the publication's language.

Catalogues are TOML files beside this module (``en.toml``; one per language); a missing
language or key falls back to English, so a new language can be added one word at a time.
"""

from __future__ import annotations

import tomllib
from datetime import date
from functools import cache
from importlib import resources

from babel.core import UnknownLocaleError
from babel.dates import format_date

FALLBACK = "en"


@cache
def _catalogue(lang: str) -> dict[str, str]:
    try:
        text = resources.files(__package__).joinpath(f"{lang}.toml").read_text("utf-8")
    except FileNotFoundError:
        return {}
    return tomllib.loads(text)


def catalogue(lang: str) -> dict[str, str]:
    """Every theme word for ``lang`` (a BCP 47 tag), English where a word is missing."""
    base = lang.split("-")[0].lower()
    return _catalogue(FALLBACK) | _catalogue(base) | _catalogue(lang)


def format_long_date(value: date, lang: str) -> str:
    """A date as the publication's readers write it, e.g. "March 1, 2020" or "1 mars 2020"."""
    try:
        return format_date(value, format="long", locale=lang.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return format_date(value, format="long", locale=FALLBACK)


def format_month_year(value: date, lang: str) -> str:
    """The issue date as a masthead shows it, e.g. "March 2020"."""
    try:
        return format_date(value, format="LLLL y", locale=lang.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return format_date(value, format="LLLL y", locale=FALLBACK)
