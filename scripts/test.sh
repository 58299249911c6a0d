#!/usr/bin/env bash
# The test command: installs the workspace from uv.lock (uv via pip if missing) and runs
# every test on the CPU. GPU tests skip cleanly without a GPU; Triton kernels run under
# the interpreter (TRITON_INTERPRET=1) on small shapes.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
uv sync --locked --quiet
exec uv run --locked --no-sync pytest -n 2 "$@"
