"""The declared schema of ``masthead.toml``, ``issue.toml`` and item front matter.

Every field is documented once, here; ``masthead reference`` prints the README's
format reference from these docstrings, and a test keeps the two in step.
Validation errors are turned into :class:`~masthead.errors.MastheadError` that name the
file, the key, the line and the fix (:func:`validate`).
"""

from __future__ import annotations

import difflib
import re
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import annotated_types
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .errors import ConfigError, ContentError, MastheadError, excerpt, shorten

M = TypeVar("M", bound=BaseModel)


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class Kind(StrEnum):
    """What an item is; each kind is laid out as a periodical lays it out."""

    article = "article"
    reprint = "reprint"
    excerpt = "excerpt"
    letter = "letter"
    brief = "brief"


KINDS = [k.value for k in Kind]

_DATE_TEXT = re.compile(r"\s*(\d{4})-(\d{1,2})-(\d{1,2})\s*")
_DATE_AND_TIME_TEXT = re.compile(r"\s*\d{4}-\d{1,2}-\d{1,2}[Tt ]")


def _not_a_date(value: Any, reason: str = "") -> PydanticCustomError:
    return PydanticCustomError(
        "calendar_date",
        "not a valid date: {value}{reason}",
        {"value": excerpt(value), "reason": f" ({reason})" if reason else ""},
    )


def _calendar_date(value: Any) -> date:
    """A day of the calendar, from a TOML/YAML date or its text "YYYY-MM-DD"; a date with a
    time, a number (not read as seconds since 1970), a flag or a list is refused."""
    if isinstance(value, datetime):
        raise _not_a_date(value.isoformat(), "it has a time of day; write the date alone")
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise _not_a_date(value)
    match = _DATE_TEXT.fullmatch(value)
    if match is None:
        reason = (
            "it has a time of day; write the date alone" if _DATE_AND_TIME_TEXT.match(value) else ""
        )
        raise _not_a_date(value, reason)
    try:
        return date(*(int(part) for part in match.groups()))
    except ValueError as exc:  # month 13, 30 February
        raise _not_a_date(value, str(exc)) from None


def _not_whole(value: Any) -> PydanticCustomError:
    return PydanticCustomError(
        "whole_number", "not a whole number: {value}", {"value": excerpt(value)}
    )


def _whole_number(value: Any) -> Any:
    """A whole number as written (or its digits as text); a flag (true is not 1), a fraction
    and digits longer than any real count are refused before pydantic would convert them."""
    if isinstance(value, bool | float):
        raise _not_whole(value)
    if isinstance(value, str):
        if not re.fullmatch(r"\s*[+-]?\d{1,18}\s*", value):
            raise _not_whole(value)
        return int(value)
    return value


CalendarDate = Annotated[date, BeforeValidator(_calendar_date)]
"""A date without a time: 2020-03-15."""
WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
"""An integer, written as one (not true, not 2.5)."""


def _http_url(value: str | None, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not re.match(r"^https?://[^\s/$.?#][^\s]*$", value, re.IGNORECASE):
        raise ValueError(f"{field} must be an http:// or https:// address, got {excerpt(value)}")
    return value


class PublisherConfig(_Schema):
    """``[publisher]`` in ``masthead.toml``: who publishes; printed in the publisher box."""

    name: str = ""
    """The organisation's name, e.g. "Riverside Community Association"."""
    about: str = ""
    """A paragraph about the organisation, printed in the publisher box."""
    address: list[str] = []
    """Postal address, one line per entry."""
    emails: list[str] = []
    """Contact email addresses."""
    website: str | None = None
    """The organisation's web site (http:// or https://)."""

    @field_validator("website")
    @classmethod
    def _website(cls, v: str | None) -> str | None:
        return _http_url(v, "website")


class EmailConfig(_Schema):
    """``[email]`` in ``masthead.toml``: how the email edition presents itself."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(default="", alias="from")
    """The sender, e.g. "Riverside Bulletin <bulletin@example.org>"; required to send mail.
    Bounces come back to a per-subscriber (VERP) variant of this address."""
    reply_to: str | None = None
    """Where readers' replies go (e.g. "editor@example.org"); default: the From address."""
    list_id: str | None = None
    """The List-Id header, e.g. "bulletin.example.org"; default: derived from ``base_url``."""
    preheader: str | None = None
    """The short line mail clients show after the subject; default: the lead item's summary."""
    attach_pdf: bool = False
    """Attach the print PDF to every email (otherwise the email links to it)."""
    dkim_selector: str | None = None
    """DKIM selector (the ``<selector>._domainkey`` DNS name); DKIM signing needs all three
    ``dkim_*`` keys."""
    dkim_domain: str | None = None
    """DKIM signing domain (``d=``), normally the From address's domain."""
    dkim_key_file: str | None = None
    """The DKIM private key (PEM), a path relative to the publication folder."""

    @field_validator("from_", "reply_to")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if not v:
            return v
        from email.utils import parseaddr

        _, addr = parseaddr(v)
        if "@" not in addr or any(c in v for c in "\r\n"):
            raise ValueError(
                f'expected an address such as "Name <me@example.org>", got {excerpt(v)}'
            )
        return v


class SmtpConfig(_Schema):
    """``[smtp]`` in ``masthead.toml``: the mail server that sends the email edition."""

    host: str = "127.0.0.1"
    """The SMTP server's host name or address."""
    port: WholeNumber = Field(default=25, ge=1, le=65535)
    """The SMTP server's port: 25 for a local relay (the default), 587 for submission with
    "starttls", 465 for "tls"."""
    security: Literal["none", "starttls", "tls"] = "none"
    """Transport security: "none", "starttls" (upgrade a plain connection) or "tls"
    (implicit TLS from the first byte)."""
    username: str = ""
    """User name for SMTP authentication; empty: no authentication."""
    password_env: str = "MASTHEAD_SMTP_PASSWORD"
    """The environment variable that holds the SMTP password (never written in the file)."""
    rate_per_minute: WholeNumber = Field(default=0, ge=0)
    """At most this many messages in any 60-second window, counted across every sender of
    the database (all ``--worker`` processes on all machines); 0: no limit."""
    rate_per_domain_per_minute: WholeNumber = Field(default=0, ge=0)
    """At most this many messages per recipient domain in any 60-second window, per sender
    process; 0: no limit."""
    concurrency: WholeNumber = Field(default=4, ge=1, le=64)
    """How many SMTP connections each sender process keeps open."""
    lease_seconds: float = Field(default=60.0, ge=5)
    """A sender holds the messages it claimed for this long, renewing the claim as it
    works; when a sender's machine dies, the other senders take its messages over once
    the lease has run out (a dead process on the same machine is noticed at once)."""
    timeout: float = Field(default=30.0, gt=0)
    """Seconds to wait for the server's answer before giving up on a connection."""
    retry_max_hours: float = Field(default=48.0, gt=0)
    """Temporary failures (4xx) are retried with back-off for up to this many hours, then the
    message is marked failed."""


class ServeConfig(_Schema):
    """``[serve]`` in ``masthead.toml``: the editor's app of ``masthead serve``."""

    admin_password_hash: str = ""
    """The editor's password, hashed by ``masthead serve --hash-password`` (never the password
    itself); the environment variable MASTHEAD_ADMIN_PASSWORD_HASH overrides it. Without
    either, the editor's pages under ``/admin/`` stay locked."""
    secure_cookie: bool | None = None
    """Mark the editor's session cookie Secure (sent over HTTPS only); default: when the
    request came over HTTPS (a TLS proxy in front must pass X-Forwarded-Proto)."""
    trusted_proxies: list[str] = ["127.0.0.1", "::1"]
    """Addresses or networks (e.g. "10.0.0.0/8") of the reverse proxies in front of
    ``masthead serve``: only from these are X-Forwarded-For (the reader's IP address, which
    consent records keep) and X-Forwarded-Proto believed; any other client is taken at its
    connection's address. ``["*"]`` trusts every client and takes the left-most
    X-Forwarded-For address, which a reader can write: only when nothing but the proxy can
    reach the port and the proxy sets the header to the client's address alone (nginx:
    ``proxy_set_header X-Forwarded-For $remote_addr;``)."""

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        import ipaddress

        for entry in v:
            if entry == "*":
                continue
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f'expected IP addresses or networks such as "10.0.0.5" or "10.0.0.0/8", '
                    f"got {excerpt(entry)}"
                ) from None
            if "/" in entry and str(network) != entry:  # uvicorn would never match it
                address = entry.partition("/")[0]
                raise ValueError(
                    f"{excerpt(entry)} is neither an address nor a network: write the network "
                    f'"{network}" or the address "{address}"'
                )
        return v


class TranslatedPublisher(_Schema):
    """``[translations.<lang>.publisher]``: the publisher box in another language."""

    name: str | None = None
    """The organisation's name in this language."""
    about: str | None = None
    """The about text in this language."""
    address: list[str] | None = None
    """The postal address as written in this language."""


class TranslationConfig(_Schema):
    """``[translations.<lang>]``: the publication's own words in another language."""

    name: str | None = None
    """The publication's name in this language."""
    tagline: str | None = None
    """The tagline in this language."""
    publisher: TranslatedPublisher = TranslatedPublisher()
    """The ``[translations.<lang>.publisher]`` table."""


class PublicationConfig(_Schema):
    """``masthead.toml``: the publication itself."""

    name: str = Field(min_length=1)
    """The publication's name, printed in the masthead, e.g. "Riverside Bulletin"."""
    tagline: str = ""
    """One line under the name, e.g. "Periodical publication of the ... Association"."""
    language: str = "en"
    """The main language as a BCP 47 tag ("en", "fr", "fa"): dates, hyphenation, theme words."""
    paper: Literal["a4", "us-letter"] = "a4"
    """Paper size of the print edition: "a4" or "us-letter"."""
    columns: WholeNumber = Field(default=2, ge=1, le=4)
    """Number of text columns on a printed page (1 to 4)."""
    base_url: str = "https://example.org/"
    """Where the web edition is published; links in feeds and emails are built from it."""
    volume_rollover: Literal["year", "never"] = "year"
    """When ``masthead new-issue`` starts a new volume: "year" (when the year turns) or
    "never" (volume stays; numbers keep counting)."""
    theme: str | None = None
    """A Typst theme file inside the publication folder to use instead of the built-in one."""
    publisher: PublisherConfig = PublisherConfig()
    """The ``[publisher]`` table."""
    database_url: str | None = None
    """Where subscribers and sends are stored, as an SQLAlchemy URL (e.g.
    "postgresql+psycopg://user@host/db"); default: SQLite in ``.masthead/masthead.db``.
    The environment variable MASTHEAD_DATABASE_URL overrides it."""
    email: EmailConfig = EmailConfig()
    """The ``[email]`` table."""
    smtp: SmtpConfig = SmtpConfig()
    """The ``[smtp]`` table."""
    serve: ServeConfig = ServeConfig()
    """The ``[serve]`` table."""
    languages: list[str] = []
    """The languages of the publication's editions, main one first, e.g. ["en", "fa"];
    default: just ``language``. An item's translation sits beside it as ``<name>.<lang>.md``."""
    translations: dict[str, TranslationConfig] = {}
    """``[translations.<lang>]`` tables: name, tagline and publisher box in the other
    languages."""
    gregorian_dates: bool = False
    """In editions dated in another calendar (Persian: Solar Hijri), also print the Gregorian
    date."""

    @property
    def main_language(self) -> str:
        return self.languages[0] if self.languages else self.language

    @property
    def edition_languages(self) -> list[str]:
        """Every language with an edition, the main one first."""
        return self.languages or [self.language]

    def localized(self, lang: str) -> PublicationConfig:
        """This config as the edition in ``lang`` sees it: its name, tagline, publisher words
        and language."""
        if lang == self.main_language:
            return self
        t = self.translations.get(lang, TranslationConfig())
        p = t.publisher
        publisher = self.publisher.model_copy(
            update={
                "name": p.name or self.publisher.name,
                "about": p.about or self.publisher.about,
                "address": p.address if p.address is not None else self.publisher.address,
            }
        )
        return self.model_copy(
            update={
                "name": t.name or self.name,
                "tagline": t.tagline if t.tagline is not None else self.tagline,
                "language": lang,
                "publisher": publisher,
            }
        )

    @model_validator(mode="after")
    def _languages_agree(self) -> PublicationConfig:
        if (
            self.languages
            and "language" in self.model_fields_set
            and self.language != self.languages[0]
        ):
            raise ValueError(
                f"language is {excerpt(self.language)} but languages starts with "
                f"{excerpt(self.languages[0])}; "
                "the first of `languages` is the main language"
            )
        if self.languages and self.language != self.languages[0]:
            object.__setattr__(self, "language", self.languages[0])
        for lang in [*self.languages, *self.translations]:
            self._language(lang)
        unknown = set(self.translations) - set(self.languages[1:])
        if unknown:
            raise ValueError(
                f"[translations.{shorten(sorted(unknown)[0])}] names a language not in "
                f"`languages` after the main one ({excerpt(self.languages)})"
            )
        return self

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        url = _http_url(v, "base_url") or "https://example.org/"
        return url if url.endswith("/") else url + "/"

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", v):
            raise ValueError(
                f'language must be a BCP 47 tag such as "en" or "fa", got {excerpt(v)}'
            )
        return v


MAX_VOLUME = 9999
MAX_NUMBER = 999_999


class IssueConfig(_Schema):
    """``issues/<slug>/issue.toml``: one numbered issue."""

    volume: WholeNumber = Field(ge=1, le=MAX_VOLUME)
    """Volume number (a whole number from 1 to 9999)."""
    number: WholeNumber = Field(ge=1, le=MAX_NUMBER)
    """Issue number (a whole number from 1 to 999999); many periodicals count on across
    volumes."""
    date: CalendarDate
    """The issue's date, a TOML date such as 2020-03-01 (no quotes)."""
    title: str | None = None
    """An optional title for the issue, e.g. "Special issue on water"."""
    items: list[str] | None = None
    """Item file names in print order; without it, items are taken in file-name order."""


class ItemFrontMatter(_Schema):
    """The YAML front matter of an item (``issues/<slug>/<item>.md``)."""

    title: str = Field(min_length=1)
    """The item's title (required)."""
    kind: Kind = Kind.article
    """One of article, reprint, excerpt, letter, brief (default article)."""
    authors: list[str] = []
    """Authors, as a list (a single name is accepted too)."""
    source: str | None = None
    """The outlet a reprint or excerpt comes from, e.g. "The Valley Post"."""
    source_url: str | None = None
    """The address of the original article (http:// or https://)."""
    published: CalendarDate | None = None
    """When the original was published (a reprint's or excerpt's date; a letter's date)."""
    summary: str | None = None
    """A one- or two-sentence summary, used in contents, feeds and emails."""
    image: str | None = None
    """A lead image file beside the item (PNG, JPEG, GIF or SVG)."""
    image_alt: str | None = None
    """Alternative text for the lead image: what it shows, for readers who cannot see it."""
    caption: str | None = None
    """A caption printed under the lead image."""
    to: list[str] = []
    """A letter's addressee block, one line per entry."""
    salutation: str | None = None
    """A letter's salutation, e.g. "Dear Minister,"."""
    signed: list[str] = []
    """A letter's signature block, one line per entry (a single string is accepted too)."""

    @field_validator("authors", "to", "signed", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [v]
        return [] if v is None else v

    @field_validator("source_url")
    @classmethod
    def _source_url(cls, v: str | None) -> str | None:
        return _http_url(v, "source_url")


# ----------------------------------------------------------------------------------------
# Turning pydantic's errors into an editor's error message


def find_key_line(text: str, key: str, *, sep: str = "=", table: str | None = None) -> int | None:
    """The 1-based line where ``key`` is set in TOML (``sep='='``) or YAML (``sep=':'``)."""
    lines = text.splitlines()
    start = 0
    if table is not None:
        for i, line in enumerate(lines):
            if re.match(rf"^\s*\[\s*{re.escape(table)}\s*\]", line):
                start = i + 1
                break
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*{re.escape(sep)}")
    for i in range(start, len(lines)):
        if pattern.match(lines[i]):
            return i + 1
    return None


def _field_at(model: type[BaseModel], loc: list[str]) -> Any:
    """The field at ``loc`` (e.g. ``["smtp", "port"]``), or None when it is not a field."""
    parent: Any = model
    field = None
    for part in loc:
        if not (isinstance(parent, type) and issubclass(parent, BaseModel)):
            return None
        field = parent.model_fields.get(part)
        if field is None:
            return None
        parent = field.annotation
    return field


def _parent_model(model: type[BaseModel], loc: list[str]) -> type[BaseModel]:
    """The model holding the last key of ``loc``, through sub-tables and ``dict`` tables
    (``translations.<lang>``)."""
    parent: type[BaseModel] = model
    for part in loc:
        field = parent.model_fields.get(part)
        if field is None:
            continue  # a dict's own key, such as the language of [translations.fa]
        for candidate in (field.annotation, *get_args(field.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                parent = candidate
    return parent


def number_rule(model: type[BaseModel], loc: list[str]) -> str | None:
    """ "volume must be a whole number between 1 and 9999" for an integer key, else None."""
    field = _field_at(model, loc)
    if field is None or field.annotation is not int:
        return None
    low = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
    name = loc[-1]
    if low is not None and high is not None:
        return f"{name} must be a whole number between {low} and {high}"
    if low is not None:
        return f"{name} must be a whole number, {low} or more"
    return f"{name} must be a whole number"


def _describe(
    error: dict[str, Any], model: type[BaseModel], sep: str = "="
) -> tuple[str, str | None, str]:
    """(message, fix, key) for one pydantic error; the message quotes no more of the input
    than an excerpt."""
    loc = [str(p) for p in error["loc"] if not isinstance(p, int)]
    key = ".".join(loc) or "(top level)"
    shown = shorten(key)
    kind = error["type"]
    if kind == "extra_forbidden":
        known = list(_parent_model(model, loc[:-1]).model_fields)
        close = difflib.get_close_matches(shorten(loc[-1], 100), known, n=1, cutoff=0.6)
        fix = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(known)}"
        return f"unknown key `{shown}`", fix, key
    if kind == "missing":
        return f"`{shown}` is required but missing", f"add `{shown}`", key
    if kind == "enum" and loc and loc[-1] == "kind":
        return (
            f"unknown kind {excerpt(error.get('input'))}",
            f"use one of: {', '.join(KINDS)}",
            key,
        )
    if kind == "calendar_date" or kind.startswith("date"):
        ctx = error.get("ctx", {}) if kind == "calendar_date" else {}
        value = ctx.get("value") or excerpt(error.get("input"))
        reason = ctx.get("reason", "")
        example = f"{loc[-1]}{sep} 2020-03-15" if sep == ":" else f"{loc[-1]} = 2020-03-15"
        return (
            f"`{shown}` is not a valid date: {value}{reason}",
            f"write a date as YYYY-MM-DD, e.g. {example}",
            key,
        )
    message = error["msg"].removeprefix("Value error, ")
    if not loc:  # a rule across several keys
        return message, None, ""
    return f"`{shown}`: {message}", number_rule(model, loc), key


def validate(
    model: type[M],
    data: Any,
    *,
    path: Path,
    text: str,
    line_offset: int = 0,
    sep: str = "=",
) -> M:
    """Validate ``data`` against ``model``; on failure raise an error naming file, key, line."""
    error_class: type[MastheadError] = ContentError if sep == ":" else ConfigError
    if not isinstance(data, dict):
        raise error_class(
            "expected a set of `key: value` lines" if sep == ":" else "expected a TOML table",
            path=path,
            line=line_offset + 1,
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message, fix, key = _describe(first, model, sep)
        parts = key.split(".")
        table = ".".join(parts[:-1]) if sep == "=" and len(parts) > 1 else None
        line = find_key_line(text, parts[-1], sep=sep, table=table) if key else None
        message = shorten(message, 500)  # every part is bounded; this bounds their sum
        more = len(exc.errors()) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise error_class(
            message, path=path, line=(line + line_offset) if line else None, fix=fix
        ) from None


# ----------------------------------------------------------------------------------------
# The format reference, generated from the docstrings above


def _model_sections(
    heading: str, model: type[BaseModel], prefix: str = ""
) -> list[tuple[str, type[BaseModel], str]]:
    """The model's own table, then one per sub-table (a field whose type is a model)."""
    sections = [(heading, model, prefix)]
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            key = field.alias or name
            sections += _model_sections(
                f"masthead.toml `[{prefix}{key}]`", annotation, f"{prefix}{key}."
            )
    return sections


def reference_markdown() -> str:
    """The format reference as Markdown, one table per file or table (the README embeds it)."""
    sections = [
        *_model_sections("masthead.toml", PublicationConfig),
        ("masthead.toml `[translations.<lang>]`", TranslationConfig, "translations.<lang>."),
        (
            "masthead.toml `[translations.<lang>.publisher]`",
            TranslatedPublisher,
            "translations.<lang>.publisher.",
        ),
        ("issue.toml", IssueConfig, ""),
        ("Item front matter", ItemFrontMatter, ""),
    ]
    out: list[str] = []
    for heading, model, prefix in sections:
        out.append(f"#### {heading}\n")
        out.append("| key | default | meaning |")
        out.append("| --- | --- | --- |")
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                continue
            if field.is_required():
                default = "required"
            else:
                value = field.get_default(call_default_factory=True)
                default = "—" if value in (None, [], "") else f"`{value}`"
            doc = " ".join((field.description or "").split())
            out.append(f"| `{prefix}{field.alias or name}` | {default} | {doc} |")
        out.append("")
    return "\n".join(out)
