"""The web edition: a static site of every issue, with feeds and search (see ``site.py``)."""

from .site import render_web_issue, render_web_site

__all__ = ["render_web_issue", "render_web_site"]
