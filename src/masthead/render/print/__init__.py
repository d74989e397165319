"""The print edition: Typst, fed the issue as data."""

from .pdf import PrintEdition, render_print_edition

__all__ = ["PrintEdition", "render_print_edition"]
