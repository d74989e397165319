"""Stage 3 — render: one edition per sub-package (print; web and email beside it)."""
