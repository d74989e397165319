"""Progress and summaries on the terminal, kept out of the library and the CLI's logic."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .build import BuildReport, build


def run_build(
    directory: Path,
    *,
    issue: str | None = None,
    strict: bool = False,
    force: bool = False,
    lang: str | None = None,
    quiet: bool = False,
    verbose: bool = False,
    no_wait: bool = False,
) -> BuildReport:
    """Run a build with a progress bar (on a terminal) and print what it did. Behind another
    build of the publication it waits, saying so (even with ``quiet``: a silent wait looks
    like a hang), or with ``no_wait`` fails at once."""
    progress_bar = None
    if not quiet and sys.stderr.isatty():
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        progress_bar = Progress(
            TextColumn("[bold]Building[/] {task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(),
            transient=True,
        )
    task: list[int] = []

    def progress(slug: str, done: int, total: int) -> None:
        if progress_bar is None:
            return
        if not task:
            progress_bar.start()
            task.append(progress_bar.add_task(slug, total=total))
        progress_bar.update(task[0], completed=done, description=slug)

    try:
        report = build(
            directory,
            issue=issue,
            strict=strict,
            force=force,
            lang=lang,
            progress=progress,
            wait=0 if no_wait else None,
            on_wait=lambda line: click.secho(line, fg="yellow", err=True),
        )
    finally:
        if progress_bar is not None and task:
            progress_bar.stop()
    if not quiet:
        print_summary(report, verbose=verbose)
    return report


def print_summary(report: BuildReport, *, verbose: bool = False) -> None:
    if report.damage:
        click.secho(
            f"  {report.site}/ was not whole ({'; '.join(report.damage[:3])}): built in full",
            fg="yellow",
            err=True,
        )
    for item in report.built:
        click.echo(
            f"  built {item.slug}: {item.pages} pages, {item.items} items, {item.seconds:.2f} s"
        )
    if verbose and report.unchanged:
        click.echo(f"  unchanged: {', '.join(report.unchanged)}")
    shown = report.warnings if verbose else report.warnings[:5]
    for warning in shown:
        click.secho(f"  warning: {warning}", fg="yellow", err=True)
    if len(report.warnings) > len(shown):
        click.secho(
            f"  … and {len(report.warnings) - len(shown)} more warnings (--verbose shows all)",
            fg="yellow",
            err=True,
        )
    if report.noop:
        click.echo(f"Nothing to do: {len(report.unchanged)} issue(s) unchanged in {report.site}/")
    else:
        click.echo(
            f"Built {len(report.built)} issue(s) into {report.site}/ in {report.seconds:.2f} s"
            + (f"; {len(report.unchanged)} unchanged" if report.unchanged else "")
        )


def print_outputs(site: Path) -> None:
    """What a build wrote, read from its manifest: the files an editor opens next."""
    import json

    manifest = json.loads((site / "manifest.json").read_text("utf-8"))
    lines = []
    for issue in manifest["issues"]:
        editions = {"": issue, **issue.get("editions", {})}
        for lang, edition in editions.items():
            label = f"{issue['slug']}" + (f" ({lang})" if lang else "")
            lines.append(f"  {label}: print edition  {site / edition['pdf']}")
            if edition.get("html"):
                lines.append(f"  {label}: web edition    {site / edition['html']}")
            if edition.get("email"):
                lines.append(f"  {label}: email edition  {site / edition['email']}")
    if (site / "index.html").is_file():
        lines.append(f"  the web site starts at {site / 'index.html'} (or: masthead serve)")
    click.echo("\n".join(lines))
