"""``masthead db``: the subscriber database — upgrade, status, copy to another server."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .cli import PUB_DIR, friendly_errors, main


@main.group("db")
def db() -> None:
    """The subscriber database (SQLite by default, PostgreSQL for several machines).

    \b
    The database is database_url in masthead.toml, or MASTHEAD_DATABASE_URL, or else
    PUB/.masthead/masthead.db.

    Example: masthead db upgrade bulletin
    """


@db.command("upgrade")
@PUB_DIR
@friendly_errors
def db_upgrade(directory: Path) -> None:
    """Create the database or bring it to the current schema version (keeps all data).

    Safe to run from several machines at once, and again: an up-to-date database is left
    as it is.

    Example: MASTHEAD_DATABASE_URL=postgresql://masthead@db1/bulletin masthead db upgrade bulletin
    """
    from .content import load_publication
    from .store import current_version, database_url, get_engine, open_store
    from .store.copy import shown

    pub = load_publication(directory)
    url = database_url(pub)
    try:
        with get_engine(url).connect() as conn:
            before = current_version(conn)
    except Exception:  # open_store below names the problem with its fix
        before = -1
    after = open_store(pub, upgrade=True).version()
    if before == after:
        click.echo(f"Database at schema version {after} (up to date): {shown(url)}")
    else:
        click.echo(f"Database upgraded from version {max(before, 0)} to {after}: {shown(url)}")


@db.command("status")
@PUB_DIR
@friendly_errors
def db_status(directory: Path) -> None:
    """Show which database the publication uses, its schema version and its rows.

    Example: masthead db status bulletin
    """
    from sqlalchemy import func, select

    from .content import load_publication
    from .store import LATEST, open_store
    from .store.copy import copied_tables, shown

    store = open_store(load_publication(directory), upgrade=False)
    version = store.version()
    click.echo(f"Database: {shown(store.url)}")
    behind = " (run `masthead db upgrade`)" if version < LATEST else ""
    click.echo(f"Schema version: {version} of {LATEST}{behind}")
    if version == 0:
        return
    with store.read() as conn:
        for table in copied_tables():
            try:
                n = conn.execute(select(func.count()).select_from(table)).scalar_one()
            except Exception:  # a table of a later version
                continue
            click.echo(f"  {table.name:<16} {n:>12,}")


@db.command("copy")
@click.argument(
    "directory", required=False, type=click.Path(file_okay=False, path_type=Path), default=None
)
@click.option(
    "--from",
    "source",
    metavar="URL",
    help="The database to copy (default: DIRECTORY's database, e.g. its SQLite file).",
)
@click.option(
    "--to", "target", metavar="URL", required=True, help="The new, empty database to fill."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress; print only the summary.")
@friendly_errors
def db_copy(directory: Path | None, source: str | None, target: str, quiet: bool) -> None:
    """Copy every subscriber, consent record, suppression and send to another database.

    The destination is created at the current schema version and must be empty. Everything
    is read from one snapshot of the source and written in one transaction, then the
    destination is read back and compared with what was read, table by table: row counts
    and a SHA-256 checksum are printed, and the exit status is 1 unless every table
    matches. The source is only read. Afterwards, set database_url (or
    MASTHEAD_DATABASE_URL) to the new database on every machine.

    \b
    Example:
      masthead db copy --from sqlite:////srv/bulletin/.masthead/masthead.db \\
                       --to postgresql://masthead@db1/bulletin
    """
    from .store.copy import copy_database

    if source is None:
        if directory is None:
            raise click.UsageError("give --from URL, or the publication DIRECTORY to copy from")
        from .content import load_publication
        from .store import database_url

        source = database_url(load_publication(directory))
    progress = None
    if not quiet and sys.stderr.isatty():
        from rich.console import Console

        console = Console(stderr=True)

        def progress(table: str, rows: int) -> None:
            console.print(f"  {table}: {rows:,} rows", end="\r")

    report = copy_database(source, target, progress)
    click.echo(f"Copied {report.source} → {report.target} in {report.seconds:.1f} s")
    click.echo(f"  {'table':<16} {'source rows':>12} {'copied rows':>12}  checksum (SHA-256)")
    for t in report.tables:
        mark = "" if t.ok else "   MISMATCH"
        click.echo(
            f"  {t.name:<16} {t.source_rows:>12,} {t.target_rows:>12,}  {t.target_sum[:16]}{mark}"
        )
    click.echo(f"  {'all':<16} {'':>12} {report.rows:>12,}  {report.checksum[:16]}")
    if not report.ok:
        click.secho("The copy does not match its source: do not switch to it.", fg="red", err=True)
        sys.exit(1)
    click.echo("Every row matches. Point database_url (or MASTHEAD_DATABASE_URL) at the copy.")


@db.command("restore")
@PUB_DIR
@click.option(
    "--from",
    "source",
    metavar="FILE",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The copy to restore (default: the newest in .masthead/backups/).",
)
@click.option(
    "--list", "list_only", is_flag=True, help="List the copies, newest last; change nothing."
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@friendly_errors
def db_restore(directory: Path, source: Path | None, list_only: bool, yes: bool) -> None:
    """Put back the copy of the SQLite database made before the last send.

    Use it when the database file was deleted, emptied or damaged: Masthead refuses such a
    file rather than take it for a new, empty list. The file replaced is kept beside it as
    masthead.db.replaced-<time>. Stop `masthead serve` and any send first. Subscribers who
    signed up, and answers recorded, after the copy was made are not in it.

    \b
    Example: masthead db restore bulletin
             masthead db restore bulletin --from bulletin/.masthead/backups/masthead-….db
    """
    from .content import load_publication
    from .errors import StoreError
    from .store import database_url
    from .store.backup import backups, restore

    pub = load_publication(directory)
    if list_only:
        found = backups(pub)
        if not found:
            click.echo("No copies yet (one is made before each send).")
        for path in found:
            click.echo(f"  {path}  {path.stat().st_size:>12,} bytes")
        return
    url = database_url(pub)
    chosen = source or (backups(pub) or [None])[-1]
    question = f"Replace the database with {chosen}?"
    if chosen is not None and not yes and not click.confirm(question, default=False):
        click.echo("Nothing changed.")
        sys.exit(1)
    from .deliver.journal import live_senders

    running = live_senders(pub)
    if running:  # it would go on writing to the file moved aside
        raise StoreError(
            f"a send is running on this machine (pid {', '.join(map(str, running))})",
            fix="stop it first (masthead send DIR --issue SLUG --pause, or Ctrl-C), and stop "
            "masthead serve, then restore",
        )
    done = restore(pub, url, source)
    click.echo(f"Restored {done.backup} → {done.database}")
    from .deliver.engine import send_message_id_parts
    from .deliver.journal import replay_finished
    from .store import open_store

    store = open_store(pub)
    answers = replay_finished(
        pub, store, done.backup.stat().st_mtime, lambda slug: send_message_id_parts(pub, slug)
    )
    if answers:
        click.echo(
            f"Recorded {answers:,} answers of sends made after the copy, from their journals "
            "(those readers are not mailed again)."
        )
    if done.kept_as:
        click.echo(f"The file it replaced is kept as {done.kept_as}")
