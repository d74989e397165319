"""The double opt-in email: a small synchronous sender (Python's ``smtplib``).

The email edition has its own engine (:mod:`masthead.deliver`); confirmation emails are a
handful at a time (one per sign-up, or an import's new addresses), so one connection,
reused for the batch, is plenty.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import TYPE_CHECKING

from ..config import SmtpConfig
from ..errors import MailError
from ..i18n import catalogue
from .addresses import clean_name
from .schema import utcnow
from .tokens import confirm_url, list_address, verp_address

if TYPE_CHECKING:
    from ..model import Publication
    from .subscriber_list import Subscriber


def smtp_connect(config: SmtpConfig) -> smtplib.SMTP:
    """An open, authenticated SMTP connection per ``[smtp]``."""
    context = ssl.create_default_context()
    try:
        if config.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                config.host, config.port, timeout=config.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
            if config.security == "starttls":
                smtp.starttls(context=context)
        if config.username:
            password = os.environ.get(config.password_env)
            if password is None:
                smtp.close()
                raise MailError(
                    f"[smtp] username is set but ${config.password_env} is empty",
                    fix=f"export {config.password_env}=… (the password is never in the file)",
                )
            smtp.login(config.username, password)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(
            f"cannot reach the mail server {config.host}:{config.port}: {exc}",
            fix="check [smtp] host, port and security in masthead.toml",
        ) from exc
    return smtp


def confirmation_message(pub: Publication, subscriber: Subscriber) -> EmailMessage:
    """The confirmation email for one pending subscriber, built only with ``email``'s API
    (headers encoded by the library: nothing can inject a header). It carries no text the
    person who signed up chose: not the name, so the form cannot mail words or links of a
    stranger's to any address."""
    words = catalogue(subscriber.language or pub.config.language)
    sender = pub.config.email.from_
    # The name is left out: anyone can type any name (with links) for any address on the
    # public form, and this mail goes to an address that has not agreed to anything yet.
    msg = EmailMessage()
    msg["From"] = sender
    local, _, domain = subscriber.email.rpartition("@")
    msg["To"] = Address(username=local, domain=domain)
    if pub.config.email.reply_to:
        msg["Reply-To"] = pub.config.email.reply_to
    msg["Subject"] = words["confirm_subject"].format(publication=clean_name(pub.config.name))
    msg["Date"] = format_datetime(utcnow())
    parts = list_address(pub)
    msg["Message-ID"] = make_msgid(domain=parts[1] if parts else None)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        words["confirm_body"].format(
            name="",
            publication=pub.config.name,
            email=subscriber.email,
            link=confirm_url(pub, subscriber.id, subscriber.email),
        )
    )
    return msg


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


@dataclass
class ConfirmationReport:
    sent: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(address, reason) for each message the server refused or could not take."""


def send_confirmations(pub: Publication, pending: list[Subscriber]) -> ConfirmationReport:
    """Send a confirmation email to each pending subscriber over one SMTP connection.

    Raises :class:`MailError` when no From address is configured or the server cannot be
    reached; a refused recipient is reported and the rest are sent.
    """
    report = ConfirmationReport()
    if not pending:
        return report
    if not parseaddr(pub.config.email.from_)[1]:
        raise MailError(
            "cannot send confirmation emails: no sender address",
            fix="set `from` in the [email] table of masthead.toml, or add the addresses with "
            "--confirmed if they agreed before",
        )
    smtp = smtp_connect(pub.config.smtp)
    try:
        for subscriber in pending:
            msg = confirmation_message(pub, subscriber)
            envelope_from = verp_address(pub, subscriber.id, subscriber.email) or ""
            try:
                smtp.send_message(msg, from_addr=envelope_from, to_addrs=[subscriber.email])
                report.sent.append(subscriber.email)
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                report.failed.append((subscriber.email, f"{code} {text.decode(errors='replace')}"))
            except smtplib.SMTPResponseException as exc:
                reason = f"{exc.smtp_code} {exc.smtp_error.decode(errors='replace')}"
                report.failed.append((subscriber.email, reason))
                if exc.smtp_code == 421:
                    smtp.close()
                    smtp = smtp_connect(pub.config.smtp)
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        done = set(report.sent) | {a for a, _ in report.failed}
        lost = f"connection lost: {exc}"
        report.failed.extend((s.email, lost) for s in pending if s.email not in done)
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()
    return report
