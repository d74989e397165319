"""Commands of the web edition: ``masthead search``."""

from __future__ import annotations

from pathlib import Path

import click

from .cli import friendly_errors, main


@main.command("search")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("query")
@click.option("-n", "--limit", default=20, show_default=True, help="Show at most this many items.")
@click.option("--json", "as_json", is_flag=True, help="Print the matches as JSON lines.")
@click.option("--lang", metavar="LANG", help="Search this language's edition (e.g. fa).")
@friendly_errors
def search_command(
    directory: Path, query: str, limit: int, as_json: bool, lang: str | None
) -> None:
    """Search every built issue of DIRECTORY for items holding every word of QUERY.

    Looks in the text of the last build (_site/); case and accents do not matter.
    Prints each match's issue, item, print pages and a line of context.

    Example: masthead search bulletin "footbridge council"
    """
    import dataclasses
    import json

    from .render.web.search import search_site

    matches = search_site(directory, query, limit=limit, lang=lang)
    if as_json:
        for m in matches:
            click.echo(json.dumps(dataclasses.asdict(m), ensure_ascii=False))
        return
    if not matches:
        click.echo(f"No item holds {query!r}.")
        return
    for m in matches:
        first, last = [*m.pages, 0, 0][:2]
        pages = "" if not first else f"p. {first}" if last in (0, first) else f"pp. {first}–{last}"
        where = f"Vol. {m.volume} No. {m.number} ({m.issue})"
        click.echo(click.style(m.title, bold=True) + f"  {where}  {pages}".rstrip())
        click.echo(f"  {m.issue}/{m.item}  _site/{m.html}")
        if m.snippet:
            click.echo(f"  {m.snippet}")
