#!/usr/bin/env bash
# The main job: installs the workspace from uv.lock (uv via pip if missing) and runs the
# quantization benchmark on the CPU, printing its table (until the drop-in demo exists).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-uv.sh
uv sync --locked --quiet
exec uv run --locked --no-sync python -m benchmarks.quant --device cpu "$@"
