"""The command line: thin click commands over the library; no logic lives here.

Every :class:`~masthead.errors.MastheadError` becomes ``Error: <file:line>: message`` plus
its fix, and exit status 1.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import date
from importlib import import_module
from pathlib import Path
from typing import Any, TypeVar

import click

from .errors import MastheadError

F = TypeVar("F", bound=Callable[..., Any])

PUB_DIR = click.argument(
    "directory",
    required=False,
    default=".",
    type=click.Path(file_okay=False, path_type=Path),
)


def friendly_errors(fn: F) -> F:
    """Turn Masthead's errors into one clear message and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MastheadError as exc:
            click.secho(f"Error: {exc}", fg="red", err=True)
            sys.exit(1)
        except Exception as exc:
            message = database_failure(exc, kwargs.get("directory"))
            if message is None:
                raise
            click.secho(f"Error: {message}", fg="red", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def database_failure(exc: Exception, directory: Path | None) -> str | None:
    """The message for a database that failed in the middle of a command (None: not a
    database error). Checked without importing SQLAlchemy: a command that never touched
    the database cannot have one."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None or not isinstance(exc, sa_exc.DBAPIError):
        return None
    from .store import database_error_line

    line = database_error_line(exc)
    pub = directory or "DIR"
    if isinstance(exc, sa_exc.OperationalError) and "malformed" not in line:
        return (
            f"the database stopped answering: {line}\n  fix: check that the database server "
            "is running and reachable (database_url / MASTHEAD_DATABASE_URL), then run the "
            "same command again: a send goes on where it stopped"
        )
    return (
        f"the database failed: {line}\n  fix: if it says the file is malformed or not a "
        f"database, restore the last good copy with `masthead db restore {pub}` (made before "
        "each send); otherwise run the command again, and report it if it persists"
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="masthead")
def main() -> None:
    """Masthead publishes a numbered periodical — a print PDF, a web edition and an email
    edition — from one folder of Markdown.

    \b
    A month with Masthead:
      masthead init bulletin            start a publication
      masthead new-issue bulletin       the next volume/number
      (write items as Markdown in bulletin/issues/<issue>/)
      masthead clip URL bulletin        bring in another outlet's article
      masthead build bulletin           print PDF, web site and email edition in _site/
      masthead send bulletin --issue S  mail it to the subscribers who consented
      masthead serve bulletin           the same work in a browser (/admin/)
      masthead demo                     see it all on a bundled sample
    """


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="My Bulletin", show_default=True, help="The publication's name.")
@friendly_errors
def init(directory: Path, name: str) -> None:
    """Start a new publication in DIRECTORY, with one sample issue.

    Example: masthead init bulletin --name "Riverside Bulletin"
    """
    from .scaffold import init_publication

    init_publication(directory, name=name)
    click.echo(f"Started {name!r} in {directory}/ — edit masthead.toml, then `masthead build`.")


@main.command("new-issue")
@PUB_DIR
@click.option("--slug", help="Folder name for the issue (default: YYYY-MM of today).")
@click.option(
    "--date",
    "when",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The issue's date (default: today), as YYYY-MM-DD.",
)
@click.option("--lang", metavar="LANG", help="Also start the item in this language (lead.LANG.md).")
@friendly_errors
def new_issue_command(directory: Path, slug: str | None, when: Any, lang: str | None) -> None:
    """Create the next issue: number + 1 (volume + 1 when the year turns), today's date.

    Example: masthead new-issue bulletin
    """
    from .scaffold import new_issue

    today: date | None = when.date() if when else None
    made = new_issue(directory, today=today, slug=slug, lang=lang)
    click.echo(
        f"Issue {made.slug}: Volume {made.volume} Number {made.number}, {made.date:%Y-%m-%d} "
        f"— write its items in {made.path}/"
    )


@main.command("build")
@PUB_DIR
@click.option("--issue", "issue", metavar="SLUG", help="Build only this issue.")
@click.option(
    "--strict", is_flag=True, help="Treat warnings (e.g. an image without alt text) as errors."
)
@click.option("--force", is_flag=True, help="Render every issue, changed or not.")
@click.option("--lang", metavar="LANG", help="Build only this language's edition (e.g. fa).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", is_flag=True, help="Print each issue's details and every warning.")
@click.option(
    "--no-wait",
    is_flag=True,
    help="If another build of this publication is running, fail at once saying which, "
    "instead of waiting for it.",
)
@friendly_errors
def build_command(
    directory: Path,
    issue: str | None,
    strict: bool,
    force: bool,
    lang: str | None,
    quiet: bool,
    verbose: bool,
    no_wait: bool,
) -> None:
    """Build the issues into DIRECTORY/_site/: the print PDF, the web site with its feeds
    and search, the email edition's preview (email.eml) and manifest.json, for every
    language of the publication.

    Only issues whose files changed are rendered again. A failed build leaves the last
    good _site/ untouched. One build of a publication runs at a time: a second one waits
    for the first (or, with --no-wait, fails at once).

    Example: masthead build bulletin --strict
    """
    from .terminal import run_build

    run_build(
        directory,
        issue=issue,
        strict=strict,
        force=force,
        lang=lang,
        quiet=quiet,
        verbose=verbose,
        no_wait=no_wait,
    )


@main.command()
@click.argument(
    "directory",
    required=False,
    default="masthead-demo",
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@friendly_errors
def demo(directory: Path, quiet: bool) -> None:
    """Copy the bundled demo publication to DIRECTORY (default ./masthead-demo) and build it.

    Example: masthead demo && xdg-open masthead-demo/_site/2020-03/*.pdf
    """
    from .scaffold import copy_demo
    from .terminal import print_outputs, run_build

    copy_demo(directory)
    if not quiet:
        click.echo(f"Demo publication in {directory}/")
    report = run_build(directory, quiet=quiet)
    if not quiet:
        print_outputs(report.site)


@main.command()
def reference() -> None:
    """Print the publication format reference (every key of every file) as Markdown."""
    from .config import reference_markdown

    click.echo(reference_markdown())


# Commands of the later stages live in their own modules, which register on `main` when
# imported. Keep their heavy imports inside the command functions: start-up stays fast.
_COMMAND_MODULES: list[str] = [
    "cli_subscribers",
    "cli_web",
    "cli_clip",
    "cli_send",
    "cli_db",
    "cli_publish",
]

for _module in _COMMAND_MODULES:
    import_module(f"masthead.{_module}")


if __name__ == "__main__":  # pragma: no cover
    main()
