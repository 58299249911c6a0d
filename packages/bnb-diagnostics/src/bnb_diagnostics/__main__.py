"""``python -m bnb_diagnostics``: the environment report and self-test."""

from bnb_diagnostics.cli import main

raise SystemExit(main(prog="python -m bnb_diagnostics"))
