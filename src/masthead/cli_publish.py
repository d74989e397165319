"""``masthead publish``: the built site to a static host, with an atomic switch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .cli import PUB_DIR, friendly_errors, main


@main.command("publish")
@PUB_DIR
@click.option(
    "--to",
    "to",
    metavar="TARGET",
    required=True,
    help="A folder (/srv/bulletin) or an ssh target ([user@]host:/srv/bulletin); the web "
    "server's root is TARGET/current.",
)
@click.option(
    "--keep",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many releases to keep: the live one first, then the ones --rollback would go "
    "back to.",
)
@click.option(
    "--rollback",
    is_flag=True,
    help="Switch TARGET back to the release that was live before the live one (never to one "
    "rolled back from); publish nothing.",
)
@click.option(
    "--dry-run", is_flag=True, help="Say what would be copied and switched; change nothing."
)
@click.option(
    "--rsh",
    metavar="COMMAND",
    envvar="MASTHEAD_RSH",
    help='The remote shell for ssh targets, e.g. "ssh -p 2222 -i ~/.ssh/deploy" '
    "(default: ssh; or set MASTHEAD_RSH).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the final line.")
@friendly_errors
def publish_command(
    directory: Path,
    to: str,
    keep: int,
    rollback: bool,
    dry_run: bool,
    rsh: str | None,
    quiet: bool,
) -> None:
    """Publish DIRECTORY/_site/ (web edition and PDFs, made by `masthead build`) to TARGET.

    Each publish writes a complete new release, TARGET/releases/<time>-<hash>/ (files
    unchanged since the live release are hard links to it), then switches the symlink
    TARGET/current to it in one rename: readers never see a half-published site. The
    last --keep releases are kept. An unchanged site publishes nothing. Each switch is
    recorded in TARGET/.masthead-history, which --rollback goes back along.

    A site that is not the whole of one build (a file deleted since, an empty
    manifest.json…) is refused. A build of the publication running meanwhile is waited
    for, and waits for the publish.

    \b
    Example: masthead publish bulletin --to /srv/bulletin
             masthead publish bulletin --to deploy@web1.example.org:/srv/bulletin
             masthead publish --to /srv/bulletin --rollback
    """
    from . import publish as publishing

    if rollback:
        report = publishing.rollback(to, dry_run=dry_run, rsh=rsh)
    else:
        report = publishing.publish(
            directory,
            to,
            keep=keep,
            dry_run=dry_run,
            rsh=rsh,
            progress=_progress_bar(quiet),
            on_wait=lambda line: click.secho(line, fg="yellow", err=True),
        )
    _print_report(report, quiet=quiet)


def _progress_bar(quiet: bool) -> Any:
    """A progress bar on a terminal (for a large site), else nothing."""
    if quiet or not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("[bold]Publishing[/]"), BarColumn(), TextColumn("{task.completed}/{task.total}")
    )
    task: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task("", total=total))
        bar.update(task[0], completed=done)
        if done >= total:
            bar.stop()

    return progress


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} bytes"  # pragma: no cover


def _print_report(report: Any, *, quiet: bool) -> None:
    live = f"{report.live_path} -> releases/{report.release}"
    if report.rolled_back:
        verb = "Would roll back" if report.dry_run else "Rolled back"
        click.echo(
            f"{verb} {report.target} from {report.previous} to {report.release}. Live: {live}"
        )
        return
    if report.noop:
        click.echo(
            f"Nothing to publish: the live release of {report.target} ({report.release}) "
            "already holds this site."
        )
        return
    if not quiet:
        verb = ("would copy", "would hard-link") if report.dry_run else ("copied", "hard-linked")
        click.echo(
            f"  {verb[0]} {report.copied} file(s) ({_size(report.bytes_copied)}), "
            f"{verb[1]} {report.linked} unchanged; {report.files} file(s), "
            f"{_size(report.bytes_total)} in all"
        )
        if report.pruned:
            gone = "would delete" if report.dry_run else "deleted"
            click.echo(f"  {gone} {len(report.pruned)} old release(s): {', '.join(report.pruned)}")
    if report.dry_run:
        click.echo(
            f"Dry run: would publish release {report.release} to {report.target}; "
            "nothing was changed."
        )
        return
    click.echo(f"Published release {report.release} in {report.seconds:.2f} s. Live: {live}")
