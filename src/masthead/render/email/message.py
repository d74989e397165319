"""The email edition as a MIME message: rendered once per issue and language, personalised per
recipient by byte substitution.

Rendering an issue (HTML, CSS inlining, text) takes milliseconds; a send to 100,000 readers
cannot afford that per message. :func:`build_template` therefore renders once, with ASCII
placeholder tokens where per-recipient parts go, and serialises the message through Python's
``email`` API (every header is built by it). :meth:`MessageTemplate.personalise` then joins
pre-encoded byte segments with each recipient's values:

* header values (Message-ID, List-Unsubscribe) are checked to be plain ASCII with no white
  space, so they cannot break a header; the ``To`` line is folded by the ``email`` API from a
  sanitised display name (:func:`clean_display_name`);
* the text and HTML parts are quoted-printable. Their static segments are encoded once; each
  recipient value is encoded on its own and set between *soft line breaks* (``=`` CRLF), so
  the decoded part is exactly ``segment + value + segment`` and every encoded line stays
  within RFC 2045's 76 characters. The MIME boundary cannot occur in QP output (``=`` is
  always escaped there).

DKIM (``dkimpy``) signs the personalised bytes, List-Unsubscribe and List-Unsubscribe-Post
included, when ``[email] dkim_*`` is configured.
"""

from __future__ import annotations

import binascii
import re
import time
from dataclasses import dataclass, field
from datetime import UTC
from email import policy
from email.charset import Charset
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from html import escape
from pathlib import Path

from ...errors import EmailConfigError, RecipientError
from ...headers import MAX_NAME_LENGTH, defuse_encoded_words
from ...model import Issue, Publication
from .layout import EditionData, clean_line, edition_data
from .to_html import render_html
from .to_text import render_text

# Placeholders: ASCII letters and digits only, so every encoder passes them through unchanged.
T_TO = "mhplaceholderto@placeholder.invalid"
T_MSGID = "MHPLACEHOLDERMSGID"
T_LU_HTTP = "MHPLACEHOLDERLUHTTP"
T_LU_MAILTO = "MHPLACEHOLDERLUMAILTO"
T_BODY_TEXT = "MHPLACEHOLDERBODYTEXT"
T_BODY_HTML = "MHPLACEHOLDERBODYHTML"
T_UNSUB = "MHPLACEHOLDERUNSUBSCRIBEURL"

SIGNED_HEADERS = [
    b"From",
    b"Reply-To",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"MIME-Version",
    b"Content-Type",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
]

PREVIEW_RECIPIENT = ("Reader", "reader@example.invalid")

_UTF8 = Charset("utf-8")
_SAFE_HEADER_VALUE = re.compile(r"[\x21-\x7e]+")  # visible ASCII: no space, CR, LF, 8-bit
_MSGID_LOCAL = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Recipient:
    """The per-subscriber parts of one message."""

    email: str
    name: str
    unsubscribe_url: str
    unsubscribe_mailto: str
    message_id: str
    """Complete, with angle brackets: ``<...@domain>`` (see :func:`make_message_id`)."""


@dataclass(frozen=True)
class DkimKey:
    selector: bytes
    domain: bytes
    key: bytes


@dataclass
class MessageTemplate:
    """One issue's email, ready to personalise. ``segments`` alternate static bytes and slot
    names; :meth:`personalise` fills the slots."""

    subject: str
    segments: list[bytes | str]
    dkim: DkimKey | None = None
    size: int = field(default=0)
    wire_segments: list[bytes | str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.wire_segments = _dot_stuffed(self.segments)

    def personalise(self, recipient: Recipient) -> bytes:
        """The complete message (CRLF line ends, not dot-stuffed) for one recipient."""
        values = _slot_values(recipient)
        message = b"".join(s if isinstance(s, bytes) else values[s] for s in self.segments)
        if self.dkim is not None:
            message = dkim_sign(message, self.dkim) + message
        return message

    def wire(self, recipient: Recipient) -> bytes:
        """The message as SMTP ``DATA`` content: dot-stuffed and ending in CRLF . CRLF. The
        static parts were stuffed once, when the template was made."""
        if self.dkim is not None:
            return dot_stuff(self.personalise(recipient))
        values = _slot_values(recipient)
        for slot in ("unsub_text", "unsub_html"):
            value = values[slot]
            if b"\n." in value or value.startswith(b"."):
                values[slot] = dot_stuff(value)[:-3]
        return b"".join(s if isinstance(s, bytes) else values[s] for s in self.wire_segments)


def dot_stuff(message: bytes) -> bytes:
    """``message`` as SMTP DATA content: lines starting with "." doubled (RFC 5321 4.5.2),
    ending in CRLF . CRLF."""
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    message = message.replace(b"\n.", b"\n..")  # CRLF line ends throughout
    if message.startswith(b"."):
        message = b"." + message
    return message + b".\r\n"


def _dot_stuffed(segments: list[bytes | str]) -> list[bytes | str]:
    """The template's segments with the static ones dot-stuffed (and the terminator added).
    Slot values that end a line (To, the QP slots) are followed by a segment that starts a
    line, so a leading "." there is doubled too."""
    out: list[bytes | str] = []
    line_start = True
    for segment in segments:
        if isinstance(segment, str):
            out.append(segment)
            line_start = segment in (T_TO, "unsub_text", "unsub_html")
            continue
        stuffed = segment.replace(b"\n.", b"\n..")
        if line_start and stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        out.append(stuffed)
        line_start = stuffed.endswith(b"\n")
    last = out[-1]
    assert isinstance(last, bytes) and last.endswith(b"\r\n")
    out[-1] = last + b".\r\n"
    return out


# ----------------------------------------------------------------------------------------
# Per-recipient values


def clean_display_name(name: str) -> str:
    """A display name (or subject) that cannot inject a header: control characters and
    line/paragraph separators (CR, LF, NEL, U+2028, U+2029) become spaces, and RFC 2047
    encoded words cannot decode into new lines (:func:`defuse_encoded_words`)."""
    return defuse_encoded_words(name, clean_line)


def to_header(name: str, email: str) -> bytes:
    """The ``To:`` line, built and folded by the ``email`` API."""
    if not _SAFE_HEADER_VALUE.fullmatch(email) or "@" not in email:
        raise RecipientError(f"cannot send to {email!r}: not a plain ASCII address")
    # A name stored before names were capped is cut, not allowed to make the line too long.
    display = clean_display_name(name[: MAX_NAME_LENGTH * 2])[:MAX_NAME_LENGTH]
    local, _, domain = email.rpartition("@")
    if not local or not domain or "@" in domain:
        raise RecipientError(f"cannot send to {email!r}: not an address")
    try:
        # username/domain rather than addr_spec: the address was validated when it was added
        # (email-validator), and parsing it again here would cost more than the whole message
        address = Address(display_name=display, username=local, domain=domain)
    except (ValueError, IndexError) as exc:
        raise RecipientError(f"cannot send to {email!r}: {exc}") from None
    text = str(address)  # Address quotes and escapes the display name as RFC 5322 needs
    if text.isascii() and len(text) <= 72:
        return f"To: {text}\r\n".encode("ascii")  # what folding would produce: one short line
    if display and not display.isascii():
        # RFC 2047 encoded words, split and folded by the email API's Header (fast)
        phrase = _UTF8.header_encode(display)  # one encoded word, when it fits in 75 chars
        if len(phrase) > 75:
            phrase = Header(display, "utf-8", header_name="To").encode(linesep="\r\n")
        last = phrase.rsplit("\n", 1)[-1]
        sep = "\r\n " if len(last) + len(email) + 3 > 76 else " "
        line = f"To: {phrase}{sep}<{address.addr_spec}>\r\n".encode("ascii")
    else:
        header = policy.SMTP.header_factory("To", [address])
        line = header.fold(policy=policy.SMTP).encode("ascii")
    if line.count(b"\n") != line.count(b"\r\n ") + 1:  # only folded continuation lines
        raise RecipientError(f"cannot send to {email!r}: unsafe display name")
    return line


def _ascii_value(value: str, what: str) -> bytes:
    if not _SAFE_HEADER_VALUE.fullmatch(value) or "<" in value or ">" in value:
        raise RecipientError(f"{what} must be plain ASCII without spaces, got {value!r}")
    return value.encode("ascii")


def _slot_values(r: Recipient) -> dict[str, bytes]:
    http = _ascii_value(r.unsubscribe_url, "the unsubscribe URL")
    mailto = _ascii_value(r.unsubscribe_mailto, "the unsubscribe mailto")
    msgid = r.message_id
    if not (msgid.startswith("<") and msgid.endswith(">")):
        raise RecipientError(f"Message-ID must be <local@domain>, got {msgid!r}")
    _ascii_value(msgid[1:-1], "the Message-ID")
    url = r.unsubscribe_url
    return {
        T_TO: to_header(r.name, r.email),
        T_MSGID: msgid[1:-1].encode("ascii"),
        T_LU_HTTP: http,
        T_LU_MAILTO: mailto,
        "unsub_text": _qp_slot(url),
        "unsub_html": _qp_slot(escape(url)),
    }


def make_message_id(issue_slug: str, row_id: int | str, nonce: str, domain: str) -> str:
    """A unique, ASCII-only Message-ID for one outbox row (kept on retries)."""
    local = _MSGID_LOCAL.sub("-", f"{issue_slug}.{row_id}.{nonce}")
    domain = _MSGID_LOCAL.sub("-", domain.encode("idna").decode("ascii"))
    return f"<{local}@{domain}>"


# ----------------------------------------------------------------------------------------
# Quoted-printable segments


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n").encode("utf-8")


def _qp(data: bytes) -> bytes:
    return binascii.b2a_qp(data, istext=True)


def _soft_break(encoded: bytes) -> bytes:
    """``encoded`` followed by a soft line break, its last line kept within 76 characters."""
    start = encoded.rfind(b"\r\n") + 2 if b"\r\n" in encoded else 0
    line = encoded[start:]
    if len(line) > 75:
        cut = 72
        while line[cut - 1 : cut] == b"=" or line[cut - 2 : cut - 1] == b"=":
            cut -= 1
        encoded = encoded[: start + cut] + b"=\r\n" + line[cut:]
    return encoded + b"=\r\n"


def _qp_slot(value: str) -> bytes:
    return _soft_break(_qp(value.encode("utf-8")))


def _qp_segments(text: str, token: str, slot: str) -> list[bytes | str]:
    """A body part split at ``token``: static pieces encoded once, ``slot`` between them."""
    pieces = text.split(token)
    out: list[bytes | str] = []
    for n, piece in enumerate(pieces):
        encoded = _qp(_crlf(piece))
        if n < len(pieces) - 1:
            out += [_soft_break(encoded), slot]
        else:
            out.append(encoded if encoded.endswith(b"\r\n") else encoded + b"\r\n")
    return out


# ----------------------------------------------------------------------------------------
# The template


def _list_id(pub: Publication, configured: str | None) -> str:
    if configured:
        ident = configured.strip("<> ")
    else:
        host = re.sub(r"^https?://", "", pub.config.base_url).split("/")[0].split(":")[0]
        ident = f"{re.sub(r'[^a-z0-9-]+', '-', pub.config.name.lower()).strip('-')}.{host}"
    return ident


def sender_address(pub: Publication) -> Address:
    """The ``[email] from`` address, parsed; an error that says how to set it otherwise."""
    email_config = getattr(pub.config, "email", None)
    raw = getattr(email_config, "from_", "") or ""
    name, addr = parseaddr(raw)
    if not raw or "@" not in addr:
        raise EmailConfigError(
            "no sender address for the email edition",
            path=pub.root / "masthead.toml",
            fix='add `[email]` with `from = "Bulletin <bulletin@example.org>"` to masthead.toml',
        )
    return Address(display_name=clean_display_name(name), addr_spec=addr)


def load_dkim_key(pub: Publication) -> DkimKey | None:
    c = getattr(pub.config, "email", None)
    selector = getattr(c, "dkim_selector", None)
    domain = getattr(c, "dkim_domain", None)
    key_file = getattr(c, "dkim_key_file", None)
    if not (selector or domain or key_file):
        return None
    if not (selector and domain and key_file):
        raise EmailConfigError(
            "DKIM signing needs dkim_selector, dkim_domain and dkim_key_file together",
            path=pub.root / "masthead.toml",
            fix="set all three keys in [email], or none of them",
        )
    path = pub.root / key_file
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise EmailConfigError(
            f"cannot read the DKIM key: {exc.strerror}",
            path=path,
            fix="point [email] dkim_key_file at a PEM private key inside the publication",
        ) from None
    return DkimKey(selector.encode("ascii"), domain.encode("ascii"), key)


def dkim_sign(message: bytes, key: DkimKey) -> bytes:
    """The ``DKIM-Signature:`` header line (CRLF-terminated) for ``message``."""
    import dkim

    present = [h for h in SIGNED_HEADERS if re.search(rb"(?im)^" + h + rb":", message)]
    signature = dkim.sign(
        message,
        key.selector,
        key.domain,
        key.key,
        include_headers=present,
        canonicalize=(b"relaxed", b"relaxed"),
        linesep=b"\r\n",
    )
    return signature


def build_template(
    pub: Publication,
    issue: Issue,
    *,
    pdf_path: str | None = None,
    pdf_bytes: bytes | None = None,
    lang: str | None = None,
    sender: Address | None = None,
    web_path: str | None = None,
) -> MessageTemplate:
    """Render the email edition of ``issue`` once, ready for :meth:`MessageTemplate.personalise`.

    ``pdf_path`` is the manifest's PDF path (linked); ``pdf_bytes`` is attached when
    ``[email] attach_pdf`` is set; ``web_path`` is the web edition's folder (default
    ``<slug>/``). ``sender`` defaults to ``[email] from``."""
    data = edition_data(pub, issue, pdf_path=pdf_path, lang=lang, web_path=web_path)
    email_config = getattr(pub.config, "email", None)
    sender = sender or sender_address(pub)
    return _template(pub, data, sender, email_config, pdf_path, pdf_bytes)


def _template(
    pub: Publication,
    data: EditionData,
    sender: Address,
    email_config: object,
    pdf_path: str | None,
    pdf_bytes: bytes | None,
) -> MessageTemplate:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = sender
    reply_to = getattr(email_config, "reply_to", None)
    if reply_to:
        name, addr = parseaddr(reply_to)
        msg["Reply-To"] = Address(display_name=clean_display_name(name), addr_spec=addr)
    msg["To"] = T_TO
    msg["Subject"] = clean_display_name(data.subject)
    msg["Date"] = format_datetime(_now(), usegmt=True)
    msg["Message-ID"] = f"<{T_MSGID}>"
    list_id = _list_id(pub, getattr(email_config, "list_id", None))
    msg["List-Id"] = (
        f"{clean_display_name(data.name).replace('<', '').replace('>', '')} <{list_id}>"
    )
    msg["List-Unsubscribe"] = f"<{T_LU_HTTP}>, <{T_LU_MAILTO}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(T_BODY_TEXT + "\n", subtype="plain", cte="quoted-printable")
    msg.add_alternative(T_BODY_HTML + "\n", subtype="html", cte="quoted-printable")
    if pdf_bytes is not None and getattr(email_config, "attach_pdf", False):
        msg.add_attachment(
            pdf_bytes,
            maintype="application",
            subtype="pdf",
            filename=Path(pdf_path or "issue.pdf").name,
        )
    raw = msg.as_bytes(policy=policy.SMTP)
    text = render_text(data, T_UNSUB)
    html = render_html(data, T_UNSUB)
    bodies = {
        T_BODY_TEXT: _qp_segments(text, T_UNSUB, "unsub_text"),
        T_BODY_HTML: _qp_segments(html, T_UNSUB, "unsub_html"),
    }
    return MessageTemplate(
        subject=msg["Subject"],
        segments=_split(raw, bodies),
        dkim=load_dkim_key(pub),
        size=len(raw) + len(text) + len(html),
    )


def _now():
    from datetime import datetime

    return datetime.fromtimestamp(time.time(), tz=UTC)


def _split(raw: bytes, bodies: dict[str, list[bytes | str]]) -> list[bytes | str]:
    """The serialised skeleton cut at each placeholder into static bytes and slot names."""
    tokens = [T_TO, T_MSGID, T_LU_HTTP, T_LU_MAILTO, T_BODY_TEXT, T_BODY_HTML]
    pattern = re.compile(
        rb"To: " + re.escape(T_TO.encode()) + rb"\r\n"
        rb"|"
        + rb"|".join(
            re.escape(t.encode()) + (rb"\r\n" if t.startswith("MHPLACEHOLDERBODY") else b"")
            for t in tokens[1:]
        )
    )
    out: list[bytes | str] = []
    pos = 0
    found: list[str] = []
    for m in pattern.finditer(raw):
        out.append(raw[pos : m.start()])
        token = m.group().decode("ascii").removeprefix("To: ").strip()
        found.append(token)
        if token in bodies:
            out.extend(bodies[token])
        else:
            out.append(token)
        pos = m.end()
    out.append(raw[pos:])
    if sorted(found) != sorted(tokens):  # pragma: no cover - the email API changed its output
        raise RuntimeError(f"message template lost a placeholder: found {found}")
    # merge adjacent static pieces: fewer joins per message
    merged: list[bytes | str] = []
    for piece in out:
        if isinstance(piece, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += piece
        elif piece != b"":
            merged.append(piece)
    return merged


def preview_message(
    pub: Publication, issue: Issue, *, pdf_path: str | None = None, pdf_bytes: bytes | None = None
) -> bytes:
    """The email edition as one ``.eml`` file for a placeholder reader (``masthead build``)."""
    email_config = getattr(pub.config, "email", None)
    try:
        sender = sender_address(pub)
    except EmailConfigError:
        host = re.sub(r"^https?://", "", pub.config.base_url).split("/")[0].split(":")[0]
        sender = Address(
            display_name=clean_display_name(pub.config.name), addr_spec=f"newsletter@{host}"
        )
    data = edition_data(pub, issue, pdf_path=pdf_path)
    template = _template(pub, data, sender, email_config, pdf_path, pdf_bytes)
    template.dkim = None  # a preview is not mail: no signature
    base = pub.config.base_url
    name, email = PREVIEW_RECIPIENT
    domain = sender.domain or "example.invalid"
    return template.personalise(
        Recipient(
            email=email,
            name=name,
            unsubscribe_url=f"{base}unsubscribe?preview=1",
            unsubscribe_mailto=f"mailto:{sender.addr_spec}?subject=unsubscribe",
            message_id=make_message_id(issue.slug, "preview", "0", domain),
        )
    )
