"""``masthead serve``: the built web edition and the public subscription endpoints.

:func:`create_app` gives the ASGI app (Starlette), to run under any ASGI server behind any
web server; :func:`run_server` runs it with uvicorn.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from .app import create_app

__all__ = ["app_from_environment", "create_app", "is_loopback", "run_server"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


SERVE_DIR_ENV = "MASTHEAD_SERVE_DIR"
PUBLIC_ONLY_ENV = "MASTHEAD_SERVE_PUBLIC_ONLY"


def log_events() -> None:
    """Each confirmation and unsubscription (subscriber id, IP) on stderr, once per process."""
    import logging

    events = logging.getLogger("masthead.serve")
    if events.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    events.addHandler(handler)
    events.setLevel(logging.INFO)


def app_from_environment() -> Any:
    """The app factory each uvicorn worker process calls (``--workers N``): the folder and
    the options come from the environment :func:`run_server` set before starting them."""
    log_events()
    return create_app(
        os.environ[SERVE_DIR_ENV],
        public_only=os.environ.get(PUBLIC_ONLY_ENV) == "1",
        background_checkpoints=True,
    )


def run_server(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    public_only: bool = False,
    workers: int = 1,
) -> None:
    """Serve the publication in ``directory`` on ``host``:``port`` until interrupted.

    ``public_only`` serves the site, the readers' endpoints and the probes without the
    editor's app; ``workers`` > 1 runs that many processes on the one port (uvicorn's
    supervisor restarts any that dies)."""
    import click
    import uvicorn

    from ..store import dispose_engines

    # With workers the app made here only checks the setup; each worker makes its own.
    app = create_app(directory, public_only=public_only, background_checkpoints=workers <= 1)
    pub = app.state.endpoints.pub
    if not is_loopback(host):
        click.secho(
            f"Warning: listening on {host}, reachable from other machines. In production put "
            "a TLS-terminating web server (nginx, Caddy) in front and keep this on 127.0.0.1: "
            "without TLS the editor's password and session cross the network in clear.",
            fg="yellow",
            err=True,
        )
    if not pub.site_dir.is_dir():
        click.secho(
            f"Warning: {pub.site_dir} does not exist yet; run `masthead build` first.",
            fg="yellow",
            err=True,
        )
    from .auth import configured_hash

    shown = f"[{host}]" if ":" in host else host
    processes = f", {workers} worker processes" if workers > 1 else ""
    click.echo(f"Serving {pub.config.name} at http://{shown}:{port}/{processes} (Ctrl+C to stop)")
    if workers > 1 and not public_only:
        click.secho(
            "Warning: with --workers the editor's app runs in every worker, and each keeps its "
            "own notices and the output of the sends it started; serve /admin/ from a "
            "single-process instance and give the others --public-only.",
            fg="yellow",
            err=True,
        )
    if public_only:
        click.echo("Public endpoints only: no editor's app at /admin/ (--public-only).")
    elif configured_hash(pub):
        click.echo(f"The editor's app: http://{shown}:{port}/admin/")
    else:
        click.secho(
            "The editor's app at /admin/ is locked: run `masthead serve --hash-password` and "
            "put the line it prints under [serve] in masthead.toml.",
            fg="yellow",
            err=True,
        )
    log_events()
    # proxy_headers: a trusted proxy ([serve] trusted_proxies) passes the reader's IP in
    # X-Forwarded-For, which the consent record keeps, and the scheme in X-Forwarded-Proto;
    # from any other address these headers are ignored.
    # No access log: its request lines would carry the tokens of the links; masthead logs
    # each confirmation and unsubscription (subscriber id, IP) itself.
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "proxy_headers": True,
        "forwarded_allow_ips": list(pub.config.serve.trusted_proxies),
        "access_log": False,
    }
    if workers <= 1:
        uvicorn.run(app, **options)
        return
    # Each worker is a fresh process that builds its own app (and database connections).
    dispose_engines()
    os.environ[SERVE_DIR_ENV] = str(Path(directory).resolve())
    os.environ[PUBLIC_ONLY_ENV] = "1" if public_only else ""
    uvicorn.run("masthead.web:app_from_environment", factory=True, workers=workers, **options)
