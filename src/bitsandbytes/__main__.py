"""``python -m bitsandbytes``: the environment report and self-test of bnb-diagnostics."""

from bnb_diagnostics.cli import main

raise SystemExit(main(prog="python -m bitsandbytes"))
