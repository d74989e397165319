"""Commands for the subscriber list, the public web endpoints, bounces and the database.

Thin click commands over :mod:`masthead.store`, :mod:`masthead.web` and
:mod:`masthead.store.bounces`; heavy imports stay inside the functions.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .cli import PUB_DIR, friendly_errors, main
from .subscriber_status import LIST_STATUSES

if TYPE_CHECKING:
    from .model import Publication
    from .store import Store


def _open(directory: Path) -> tuple[Publication, Store]:
    from .content import load_publication
    from .store import open_store

    pub = load_publication(directory)
    return pub, open_store(pub)


def _console(err: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if err else sys.stdout
    # Off a terminal (pipes, tests) keep whole lines: addresses must not be cut.
    return Console(file=stream, width=None if stream.isatty() else 200, highlight=False)


def _send_confirmations(pub: Publication, store: Store, pending: list[Any]) -> None:
    from .errors import MailError
    from .store.confirm import send_confirmations
    from .store.tokens import verify_secret

    if not pending:
        return
    verify_secret(store, pub)  # the links must be the ones the web machines accept
    try:
        report = send_confirmations(pub, pending)
    except MailError as exc:
        raise MailError(
            f"{len(pending)} address(es) wait for confirmation, but no confirmation email "
            f"could be sent: {exc.message}",
            fix=f"{exc.fix + ', then ' if exc.fix else ''}run `masthead subscribers resend "
            f"{pub.root}`",
        ) from exc
    if report.sent:
        click.echo(f"Sent {len(report.sent)} confirmation email(s).")
    for address, reason in report.failed:
        click.secho(f"Warning: no confirmation email to {address}: {reason}", fg="yellow", err=True)


def _require_sender(pub: Publication, confirmed: bool) -> None:
    from .errors import MailError

    if not confirmed and not pub.config.email.from_:
        raise MailError(
            "new addresses need a confirmation email, but [email] has no `from` address",
            path=pub.root / "masthead.toml",
            fix='add [email] from = "Name <list@example.org>", or pass --confirmed if these '
            "people agreed to receive the publication before",
        )


@main.group()
def subscribers() -> None:
    """Manage the subscriber list (stored in DIR/.masthead/masthead.db).

    \b
    Example: masthead subscribers import bulletin readers.csv --confirmed
             masthead subscribers list bulletin --status active
    """


@subscribers.command("add")
@PUB_DIR
@click.argument("email")
@click.option("--name", default="", help="The subscriber's name, as it appears in the To line.")
@click.option(
    "--language", help='The language they read ("en", "fr"); default: the publication\'s.'
)
@click.option(
    "--confirmed",
    is_flag=True,
    help="They agreed before: active at once, no confirmation email.",
)
@friendly_errors
def add_command(
    directory: Path, email: str, name: str, language: str | None, confirmed: bool
) -> None:
    """Add one address; without --confirmed it gets a confirmation email first.

    Example: masthead subscribers add bulletin ada@example.org --name "Ada Lovelace"
    """
    from .store import subscriber_list as subs

    pub, store = _open(directory)
    _require_sender(pub, confirmed)
    result = subs.add(store, email, name=name, language=language, confirmed=confirmed)
    s = result.subscriber
    click.echo(f"Added {s.email} (#{s.id}, {s.status}).")
    if result.needs_confirmation:
        _send_confirmations(pub, store, [s])


@subscribers.command("import")
@PUB_DIR
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--confirmed",
    is_flag=True,
    help="Consent was obtained before (an existing list): active at once, no emails.",
)
@friendly_errors
def import_command(directory: Path, file: Path, confirmed: bool) -> None:
    """Import a CSV file with a header row: email, and optionally name, language.

    Every bad row is reported with its line number and the reason (invalid address,
    duplicate, already on the list, suppressed); the others are imported. Without
    --confirmed, each new address gets a confirmation email.

    Example: masthead subscribers import bulletin readers.csv --confirmed
    """
    from rich.table import Table

    from .store import subscriber_list as subs

    pub, store = _open(directory)
    _require_sender(pub, confirmed)
    report = subs.import_csv(store, file, confirmed=confirmed)
    if report.bad:
        table = Table(
            title=f"{len(report.bad)} row(s) of {file} not imported", title_justify="left"
        )
        table.add_column("line", justify="right")
        table.add_column("address", no_wrap=True)
        table.add_column("reason")
        for bad in report.bad:
            table.add_row(str(bad.line), bad.email, bad.reason)
        _console().print(table)
    state = "active" if confirmed else "pending confirmation"
    click.echo(f"Imported {report.imported:,} address(es) ({state}); {len(report.bad)} skipped.")
    _send_confirmations(pub, store, report.to_confirm)


@subscribers.command("resend")
@PUB_DIR
@click.argument("emails", nargs=-1)
@friendly_errors
def resend_command(directory: Path, emails: tuple[str, ...]) -> None:
    """Send the confirmation email again to pending subscribers (all, or those named).

    Example: masthead subscribers resend bulletin ada@example.org
    """
    from .store import subscriber_list as subs

    pub, store = _open(directory)
    wanted = {e.strip().lower() for e in emails}
    pending = [
        s
        for s in subs.iter_subscribers(store, "pending")
        if not wanted or s.email.lower() in wanted
    ]
    if not pending:
        click.echo("No pending subscriber to remind.")
        return
    _require_sender(pub, confirmed=False)
    _send_confirmations(pub, store, pending)


@subscribers.command("export")
@PUB_DIR
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--status", type=click.Choice(LIST_STATUSES), help="Only subscribers with this status."
)
@friendly_errors
def export_command(directory: Path, file: Path | None, status: str | None) -> None:
    """Write the list as CSV to FILE (or standard output); `import` reads it back.

    Example: masthead subscribers export bulletin backup.csv
    """
    from .store import subscriber_list as subs

    _, store = _open(directory)
    if file is None:
        subs.export_csv(store, sys.stdout, status)
        return
    with open(file, "w", encoding="utf-8", newline="") as out:
        n = subs.export_csv(store, out, status)
    click.echo(f"Exported {n} subscriber(s) to {file}.", err=True)


@subscribers.command("list")
@PUB_DIR
@click.option(
    "--status", type=click.Choice(LIST_STATUSES), help="Only subscribers with this status."
)
@friendly_errors
def list_command(directory: Path, status: str | None) -> None:
    """Show the subscribers in a table, with a count per status.

    Example: masthead subscribers list bulletin --status pending
    """
    from rich.table import Table

    from .store import subscriber_list as subs

    _, store = _open(directory)
    table = Table()
    table.add_column("id", justify="right")
    table.add_column("email", no_wrap=True)
    table.add_column("name")
    table.add_column("lang")
    table.add_column("status")
    table.add_column("since")
    shown = 0
    for s in subs.iter_subscribers(store, status):
        state = f"{s.status} (suppressed: {s.suppressed})" if s.suppressed else s.status
        since = (s.confirmed_at or s.created_at).strftime("%Y-%m-%d")
        table.add_row(str(s.id), s.email, s.name, s.language or "", state, since)
        shown += 1
    console = _console()
    if shown:
        console.print(table)
    totals = subs.counts(store)
    summary = ", ".join(f"{totals[k]} {k}" for k in LIST_STATUSES if totals.get(k))
    click.echo(f"{shown} shown. List: {summary or 'empty'}.")


@subscribers.command("remove")
@PUB_DIR
@click.argument("email")
@friendly_errors
def remove_command(directory: Path, email: str) -> None:
    """Erase a subscriber and their consent history (a request to be forgotten).

    A suppressed address stays suppressed. To stop mail but keep the record, use
    `subscribers suppress`.

    Example: masthead subscribers remove bulletin ada@example.org
    """
    from .errors import SubscriberError
    from .store import subscriber_list as subs

    _, store = _open(directory)
    if not subs.remove(store, email):
        raise SubscriberError(f"{email} is not on the list", fix="`subscribers list` shows it")
    click.echo(f"Removed {email}.")


@subscribers.command("suppress")
@PUB_DIR
@click.argument("email")
@click.option(
    "--reason",
    type=click.Choice(["manual", "unsubscribed", "hard-bounce", "complaint"]),
    default="manual",
    show_default=True,
    help="Why the address must never be mailed again.",
)
@friendly_errors
def suppress_command(directory: Path, email: str, reason: str) -> None:
    """Never mail EMAIL again (on the list or not); imports cannot bring it back.

    Only its owner confirming a new subscription lifts a suppression.

    Example: masthead subscribers suppress bulletin ada@example.org --reason complaint
    """
    from .store import subscriber_list as subs

    _, store = _open(directory)
    subs.suppress(store, email, reason, source="cli")
    click.echo(f"Suppressed {email} ({reason}).")


@main.command("serve")
@PUB_DIR
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--hash-password",
    is_flag=True,
    help="Ask for the editor's password and print its hash for [serve] admin_password_hash; "
    "serve nothing.",
)
@click.option(
    "--public-only",
    is_flag=True,
    help="Serve the site, the readers' endpoints and /healthz, /readyz without the editor's "
    "app (/admin/ is a 404): for the instances behind a load balancer.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes serving the one port (each with its own database connections).",
)
@friendly_errors
def serve_command(
    directory: Path, host: str, port: int, hash_password: bool, public_only: bool, workers: int
) -> None:
    """Serve the built web edition, the public endpoints (subscribe, confirm,
    unsubscribe), the probes /healthz and /readyz, and the editor's app at /admin/ over
    HTTP. Put it behind a TLS-terminating web server in production; several instances
    can share one database behind a load balancer.

    \b
    Example: masthead serve bulletin --port 8000
             masthead serve bulletin --public-only --workers 2 --port 8001
             masthead serve --hash-password
    """
    if hash_password:
        from .web.auth import hash_password as make_hash

        password = click.prompt("Editor's password", hide_input=True, confirmation_prompt=True)
        click.echo(f'admin_password_hash = "{make_hash(password)}"')
        return
    from .web import run_server

    run_server(directory, host=host, port=port, public_only=public_only, workers=workers)


@main.command("bounces")
@PUB_DIR
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@friendly_errors
def bounces_command(directory: Path, files: tuple[Path, ...], dry_run: bool) -> None:
    """Read bounce messages (DSN .eml files or mboxes) and suppress failing addresses.

    A hard bounce (5.x.x) suppresses at once; soft bounces (4.x.x) on 3 different days,
    with no delivery between them, suppress too; so does a spam complaint. Only a report
    sent to a valid VERP address of ours acts, on that one subscriber; the others are listed
    for review and change nothing. Mails with the subject "unsubscribe <id> <token>" (the
    List-Unsubscribe mailto) unsubscribe.

    Example: masthead bounces bulletin ~/Mail/bounces.mbox
    """
    from rich.table import Table

    from .store.bounces import process_files

    pub, store = _open(directory)
    report = process_files(pub, store, list(files), dry_run=dry_run)
    if report.events:
        table = Table()
        for col in ("source", "address", "subscriber", "kind", "result"):
            table.add_column(col, no_wrap=col == "address")
        for e in report.events:
            table.add_row(
                e.source,
                e.email,
                f"#{e.subscriber_id}" if e.subscriber_id else "—",
                e.kind,
                e.result,
            )
        _console().print(table)
    if report.held:
        _print_held(report.held)
    for warning in report.warnings:
        click.secho(f"Warning: {warning}", fg="yellow", err=True)
    prefix = "Would suppress" if dry_run else "Suppressed"
    held = f"; {len(report.held)} held for review" if report.held else ""
    click.echo(
        f"Read {report.messages} message(s): {len(report.events)} bounce(s)/request(s); "
        f"{prefix} {report.suppressed} address(es){held}."
    )


def _print_held(held: list[Any]) -> None:
    """The reports not applied (no valid VERP address of ours): which message, who it names
    and why; one block each, whole lines (a forgery may name thousands)."""
    click.echo(f"{len(held)} report(s) held for review, not applied:")
    for h in held:
        shown = ", ".join(h.addresses[:5]) or "(no address)"
        if len(h.addresses) > 5:
            shown += f" … ({len(h.addresses)} in all)"
        click.echo(f"  {h.source}  Message-ID {h.message_id or '(none)'}")
        click.echo(f"    {h.kind}: {shown}")
        click.echo(f"    not applied: {h.reason}")
