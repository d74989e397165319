"""``masthead serve``: the built web edition and the public subscription endpoints.

:func:`create_app` gives the ASGI app (Starlette), to run under any ASGI server behind any
web server; :func:`run_server` runs it with uvicorn.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from .app import create_app

__all__ = ["create_app", "is_loopback", "run_server"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run_server(directory: Path, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the publication in ``directory`` on ``host``:``port`` until interrupted."""
    import click
    import uvicorn

    app = create_app(directory)
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
    click.echo(f"Serving {pub.config.name} at http://{shown}:{port}/ (Ctrl+C to stop)")
    if configured_hash(pub):
        click.echo(f"The editor's app: http://{shown}:{port}/admin/")
    else:
        click.secho(
            "The editor's app at /admin/ is locked: run `masthead serve --hash-password` and "
            "put the line it prints under [serve] in masthead.toml.",
            fg="yellow",
            err=True,
        )
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    events = logging.getLogger("masthead.serve")
    events.addHandler(handler)
    events.setLevel(logging.INFO)
    # proxy_headers: a proxy on 127.0.0.1 passes the reader's IP in X-Forwarded-For,
    # which the consent record keeps; uvicorn trusts it from loopback only.
    # No access log: its request lines would carry the tokens of the links; masthead logs
    # each confirmation and unsubscription (subscriber id, IP) itself.
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=True, access_log=False)
