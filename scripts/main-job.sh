#!/usr/bin/env bash
# The main job: installs the workspace from uv.lock and runs the quantization benchmark on
# the CPU, printing its table.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
uv sync --locked --quiet
exec uv run --locked --no-sync python -m benchmarks.quant --device cpu "$@"
