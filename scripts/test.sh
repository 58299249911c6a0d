#!/usr/bin/env bash
# The test command: installs the workspace from uv.lock (uv via pip if missing) and runs
# every test on the CPU with 2 workers. GPU tests skip cleanly without a GPU; Triton
# kernels run under the interpreter (TRITON_INTERPRET=1) on small shapes.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh packages/bnb-quant/tests -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-uv.sh
uv sync --locked --quiet
exec uv run --locked --no-sync pytest -n 2 "$@"
