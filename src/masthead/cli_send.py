"""``masthead send``: the email edition to every subscriber, crash-safe and resumable."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from .cli import PUB_DIR, friendly_errors, main

if TYPE_CHECKING:
    from .model import Issue, Publication


@main.command("send")
@PUB_DIR
@click.option("--issue", "slug", metavar="SLUG", required=True, help="The issue to send.")
@click.option("--yes", is_flag=True, help="Send without asking for confirmation.")
@click.option("--dry-run", is_flag=True, help="Show what would be sent; send nothing.")
@click.option(
    "--test-to",
    metavar="ADDRESS",
    help="Send one copy to ADDRESS only (not recorded; subscribers get nothing).",
)
@click.option("--pause", is_flag=True, help="Pause the send: running senders stop claiming.")
@click.option("--resume", is_flag=True, help="Resume a paused send (running send again does too).")
@click.option(
    "--resend-unknown",
    is_flag=True,
    help="Also resend messages whose delivery is unknown (the reply after DATA was lost); "
    "their readers may get the issue twice.",
)
@click.option(
    "--retry-base",
    type=float,
    default=None,
    hidden=True,
    help="First back-off after a 4xx answer, in seconds (default 60).",
)
@click.option(
    "--batch",
    type=int,
    default=None,
    hidden=True,
    help="Rows claimed at a time (default 250).",
)
@click.option(
    "--worker",
    is_flag=True,
    help="Run as one of several senders sharing the outbox (on this or other machines, "
    "with a shared PostgreSQL database_url): asks nothing, creates the send if it is not "
    "there yet, never lifts a pause, logs a line every 10 s instead of a progress bar.",
)
@click.option(
    "--lease",
    type=float,
    default=None,
    hidden=True,
    help="Seconds a claim holds (default [smtp] lease_seconds).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar; print only the report.")
@friendly_errors
def send_command(
    directory: Path,
    slug: str,
    yes: bool,
    dry_run: bool,
    test_to: str | None,
    pause: bool,
    resume: bool,
    resend_unknown: bool,
    retry_base: float | None,
    batch: int | None,
    worker: bool,
    lease: float | None,
    quiet: bool,
) -> None:
    """Send issue SLUG's email edition to every active subscriber of DIRECTORY.

    The outbox (one row per subscriber) is created first; each message is recorded once the
    mail server has answered. Run the same command again after a crash, a kill or --pause:
    it goes on where the last run stopped. Exit status 0 when every message was sent (or
    its reader left or bounced); 1 when some wait for a retry, or the send is paused.

    With --worker, start the same command on several machines (database_url on a shared
    PostgreSQL): each claims small batches of the outbox; if one dies, the others take its
    messages over when its lease runs out. [smtp] rate_per_minute holds across all of them.

    \b
    Example: masthead send bulletin --issue 2020-03 --yes
             masthead send bulletin --issue 2020-03 --worker   (on each machine)
    """
    from .content import load_issue, load_publication
    from .deliver import (
        count_recipients,
        create_send,
        issue_entry,
        policy_from_config,
        send_state,
        send_test,
        set_paused,
    )
    from .deliver.snapshot import has_snapshot
    from .store import open_store
    from .store.backup import backup_before_send
    from .store.tokens import verify_secret

    pub = load_publication(directory)
    if worker:
        yes = True
    if test_to:
        outcome = send_test(pub, load_issue(pub, slug), test_to)
        ok = outcome.state == "sent"
        click.echo(f"Test message to {test_to}: {outcome.state} ({outcome.code} {outcome.message})")
        sys.exit(0 if ok else 1)
    store = open_store(pub)
    state = send_state(store, slug)
    if pause:
        if not set_paused(store, slug, True):
            click.echo(f"Issue {slug} has not been sent yet: nothing to pause.")
            sys.exit(1)
        click.echo(f"Paused the send of {slug}; run `masthead send` again to resume.")
        return
    # A send that has begun goes on from the editions its first run stored: its issue folder
    # may be archived, renamed or broken since. A new send loads (and so checks) it first.
    issue: Issue | str = (
        slug if state.exists and has_snapshot(store, slug) else load_issue(pub, slug)
    )
    issue_entry(pub, slug)  # fail now, before any question, if the issue is not built
    verify_secret(store, pub)  # and if this machine would sign links no other one accepts
    if state.exists:
        todo = state.remaining + (state.count("unknown") if resend_unknown else 0)
        question = f"Resume sending issue {slug}: {todo:,} of {state.total:,} left?"
    else:
        todo = count_recipients(store)
        question = f"Send issue {slug} to {todo:,} subscribers?"
    _warn_about_long_verp(pub)
    if dry_run:
        _dry_run(pub, store, issue, state, todo)
        return
    if todo == 0 and not state.exists:
        click.echo("No active subscribers: nothing to send.")
        return
    if not yes and not click.confirm(question, default=False):
        click.echo("Nothing sent.")
        sys.exit(1)
    if resume:
        set_paused(store, slug, False)
    create_send(store, slug)
    copy = backup_before_send(store, pub, slug)  # also reads every page: damage shows now
    if copy is not None and not quiet:
        click.echo(f"Database copied to {copy} (masthead db restore puts it back).", err=True)
    policy = policy_from_config(pub, retry_base=retry_base, batch=batch, lease=lease)
    if worker:
        paused = state.paused and not resume
        report = _run_as_worker(pub, store, issue, policy, resend_unknown, quiet, paused)
    else:
        report = _run_with_progress(pub, store, issue, policy, resend_unknown, quiet)
    _print_report(report)
    sys.exit(0 if report.state.complete else 1)


def _warn_about_long_verp(pub: Publication) -> None:
    from .store.tokens import VERP_LOCAL_MAX, verp_local_part_length

    length = verp_local_part_length(pub)
    if length > VERP_LOCAL_MAX:
        click.echo(
            f"Warning: the bounce address (VERP) of the From address can reach {length} "
            f"characters before the @, over the {VERP_LOCAL_MAX} every mail server must "
            "accept; a strict server may refuse the messages. A shorter local part in "
            "[email] from avoids it.",
            err=True,
        )


def _dry_run(pub, store, issue, state, todo: int) -> None:  # type: ignore[no-untyped-def]
    from .deliver import edition_languages, issue_entry, template_cache

    if isinstance(issue, str):  # a begun send: the email its first run stored
        from .deliver.snapshot import send_templates

        template = send_templates(pub, store, issue, _never_rendered, edition_languages(pub))(None)
    else:
        template = template_cache(pub, issue, issue_entry(pub, issue.slug))(None)
    c = pub.config
    click.echo(f"Dry run: nothing is sent.\n  Subject:  {template.subject}")
    click.echo(f"  From:     {c.email.from_}")
    click.echo(f"  Server:   {c.smtp.host}:{c.smtp.port} ({c.smtp.security})")
    click.echo(f"  Messages: {todo:,}, about {template.size // 1024:,} KiB each")
    if state.exists:
        states = ", ".join(f"{n:,} {s}" for s, n in sorted(state.states.items()))
        click.echo(f"  Outbox:   {states}{' (paused)' if state.paused else ''}")
    if c.smtp.rate_per_minute:
        click.echo(
            f"  Rate:     at most {c.smtp.rate_per_minute:,} a minute: "
            f"about {todo / c.smtp.rate_per_minute:,.0f} minutes"
        )


def _never_rendered(language: str | None) -> NoReturn:
    raise AssertionError("a dry run reads a stored snapshot only")


def _run_with_progress(pub, store, issue, policy, resend_unknown: bool, quiet: bool):  # type: ignore[no-untyped-def]
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from .deliver import send_issue, send_state

    slug = issue if isinstance(issue, str) else issue.slug
    state = send_state(store, slug)
    todo = state.remaining + (state.count("unknown") if resend_unknown else 0)
    if quiet or not sys.stderr.isatty():
        return send_issue(pub, store, issue, policy=policy, resend_unknown=resend_unknown)
    columns = (
        TextColumn("Sending {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:,.0f} msg/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(slug, total=todo, rate=0.0)
        import time

        started = time.monotonic()

        def progress(stats):  # type: ignore[no-untyped-def]
            done = stats.sent + stats.failed + stats.bounced + stats.unknown
            elapsed = max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=done, rate=done / elapsed)

        return send_issue(
            pub, store, issue, policy=policy, progress=progress, resend_unknown=resend_unknown
        )


def _run_as_worker(pub, store, issue, policy, resend_unknown: bool, quiet: bool, paused: bool):  # type: ignore[no-untyped-def]
    """One of several senders: no question, no bar, a log line every 10 s (journald, cron
    mail); a paused send stays paused."""
    import time

    from .deliver import send_issue
    from .deliver.outbox import this_machine

    slug = issue if isinstance(issue, str) else issue.slug
    if paused:
        click.echo(f"The send of {slug} is paused: this worker sends nothing.")
        sys.exit(1)
    where = f"{this_machine()}:{os.getpid()}"
    started = time.monotonic()
    last = [started]

    def progress(stats):  # type: ignore[no-untyped-def]
        now = time.monotonic()
        if quiet or now - last[0] < 10:
            return
        last[0] = now
        rate = stats.sent / max(now - started, 1e-6)
        click.echo(
            f"{time.strftime('%H:%M:%S')} worker {where}: sent {stats.sent:,} "
            f"({rate:,.0f} msg/s), failed {stats.failed + stats.bounced:,}, "
            f"retrying {stats.retried:,}",
            err=True,
        )

    if not quiet:
        click.echo(f"Worker {where} sending issue {slug}", err=True)
    return send_issue(
        pub,
        store,
        issue,
        policy=policy,
        progress=progress,
        resend_unknown=resend_unknown,
        resume=False,
    )


def _print_report(report) -> None:  # type: ignore[no-untyped-def]
    s, run = report.state, report.run
    rate = run.sent / run.seconds if run.seconds else 0.0
    click.echo(
        f"Issue {s.issue_slug}: this run sent {run.sent:,} in {run.seconds:.1f} s "
        f"({rate:,.0f} msg/s)"
    )
    if report.replayed:
        click.echo(
            f"  {report.replayed:,} answers a stopped sender had received were recorded from "
            "its journal (not sent again)."
        )
    if report.recovered:
        click.echo(
            f"  {report.recovered:,} messages were on the wire, unanswered, when a sender "
            "stopped: they were sent again and may have arrived twice."
        )
    click.echo(
        f"  sent {s.count('sent'):,} · failed {s.failed:,} · bounced {s.bounced:,} · "
        f"unknown {s.count('unknown'):,} · suppressed {s.count('suppressed'):,} · "
        f"waiting {s.remaining:,} of {s.total:,}"
    )
    if run.paused:
        click.echo("  Paused: run `masthead send` again to resume.")
    if run.interrupted:
        click.echo("  Interrupted: run `masthead send` again to go on.")
    if s.count("unknown"):
        click.echo(
            "  Unknown: the reply after the message was lost; they may have arrived. "
            "--resend-unknown sends them again."
        )
    if s.remaining and not (run.paused or run.interrupted):
        click.echo("  Some messages wait for a retry: run `masthead send` again later.")
