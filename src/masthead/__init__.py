"""Masthead: publish a numbered periodical — print, web and email — from one folder of Markdown.

The pipeline, in the order of its packages: ``content`` (read the folder) → ``model``
(publication, issues, items, document trees) → ``render`` (print, web, email editions) →
``deliver`` (send); ``build`` is the orchestrator and ``cli`` the thin command line.
"""

__version__ = "0.1.0"
