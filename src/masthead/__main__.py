"""``python -m masthead``: the same as the ``masthead`` command."""

from .cli import main

main()
