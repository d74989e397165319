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
    return _catalogue(FALLBACK) | _catalogue(base_language(lang)) | _catalogue(lang)


PERSIAN_MONTHS = (
    "فروردین", "اردیبهشت", "خرداد", "تیر", "مرداد", "شهریور",
    "مهر", "آبان", "آذر", "دی", "بهمن", "اسفند",
)  # fmt: skip
DIGITS = {"fa": "۰۱۲۳۴۵۶۷۸۹", "ar": "٠١٢٣٤٥٦٧٨٩"}


def base_language(lang: str) -> str:
    return lang.split("-")[0].lower()


def localize_digits(text: str, lang: str) -> str:
    """Western digits in ``text`` written in the language's own digits (Persian: ۱۲۳)."""
    digits = DIGITS.get(base_language(lang))
    return text.translate(str.maketrans("0123456789", digits)) if digits else text


def _solar_hijri(value: date, *, day: bool) -> str:
    import jdatetime

    j = jdatetime.date.fromgregorian(date=value)
    text = f"{PERSIAN_MONTHS[j.month - 1]} {j.year}"
    return localize_digits(f"{j.day} {text}" if day else text, "fa")


def _format(value: date, lang: str, babel_format: str, *, day: bool, gregorian: bool) -> str:
    """Babel's ``babel_format`` in ``lang`` (English where Babel has no such locale); in
    Persian the Solar Hijri date, with the Gregorian one after it if ``gregorian``."""
    if base_language(lang) == "fa":
        text = _solar_hijri(value, day=day)
        if gregorian:
            text += f" ({localize_digits(format_date(value, babel_format, locale='fa'), 'fa')})"
        return text
    try:
        return format_date(value, format=babel_format, locale=lang.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return format_date(value, format=babel_format, locale=FALLBACK)


def format_long_date(value: date, lang: str, *, gregorian: bool = False) -> str:
    """A date as the publication's readers write it: "March 1, 2020", "1 mars 2020", and in
    Persian the Solar Hijri date "۱۱ اسفند ۱۳۹۸" (with the Gregorian date after it when
    ``gregorian`` is asked for)."""
    return _format(value, lang, "long", day=True, gregorian=gregorian)


def format_month_year(value: date, lang: str, *, gregorian: bool = False) -> str:
    """The issue date as a masthead shows it, e.g. "March 2020", in Persian "اسفند ۱۳۹۸"."""
    return _format(value, lang, "LLLL y", day=False, gregorian=gregorian)
