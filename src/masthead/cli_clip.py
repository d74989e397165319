"""``masthead clip``: an article from another outlet, into an issue, with its attribution."""

from __future__ import annotations

from pathlib import Path

import click

from .cli import PUB_DIR, friendly_errors, main


@main.command("clip")
@click.argument("source", metavar="URL_OR_FILE")
@PUB_DIR
@click.option("--issue", metavar="SLUG", help="The issue to add it to (default: the newest issue).")
@click.option(
    "--kind",
    type=click.Choice(["reprint", "excerpt"]),
    default="reprint",
    show_default=True,
    help="reprint keeps the whole text; excerpt keeps the first --words words.",
)
@click.option(
    "--words",
    type=click.IntRange(min=1),
    default=150,
    show_default=True,
    help="How many words an excerpt keeps (it ends at a sentence boundary).",
)
@click.option(
    "--allow-private",
    is_flag=True,
    help="Allow addresses on a private network or this machine (an intranet page).",
)
@click.option("--no-image", is_flag=True, help="Do not download the lead image.")
@click.option(
    "--lang",
    metavar="LANG",
    help="Clip the LANG version of an item (written as SLUG.LANG.md), e.g. --lang fa.",
)
@click.option(
    "--translation-of",
    metavar="SLUG",
    help="With --lang: the item this clipping translates (default: a slug from its title).",
)
@friendly_errors
def clip_command(
    source: str,
    directory: Path,
    issue: str | None,
    kind: str,
    words: int,
    allow_private: bool,
    no_image: bool,
    lang: str | None,
    translation_of: str | None,
) -> None:
    """Clip the article at URL_OR_FILE (a web address or a saved .html page) into an issue
    of the publication in DIRECTORY, as a new item with its title, authors, outlet, date and
    address filled in. What the page does not say is reported, never invented.

    Example: masthead clip https://valleypost.example.com/2020/02/flood-plan bulletin
    """
    from .content.clip import clip

    report = clip(
        source,
        directory,
        issue=issue,
        kind=kind,
        words=words,
        allow_private=allow_private,
        images=not no_image,
        lang=lang,
        translation_of=translation_of,
    )
    shown = report.path.resolve().relative_to(Path(directory).resolve())
    click.echo(f"Clipped into {shown} ({report.words} words, {kind})")
    for label, value in report.found:
        click.echo(f"  {label}: {value}")
    for note in report.missing:
        click.secho(f"  {note}", fg="yellow")
    for warning in report.warnings:
        click.secho(f"Warning: {warning}", fg="yellow", err=True)
