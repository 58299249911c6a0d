#!/usr/bin/env bash
# The main job: installs the workspace from uv.lock and runs the end-to-end demo
# (scripts/demo.py): builds a small language model, quantizes it to NF4 and int8 with
# transformers' BitsAndBytesConfig, fine-tunes LoRA adapters with PagedAdamW8bit (QLoRA),
# saves and reloads. Uses the GPU when there is one, else the CPU (a few minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-uv.sh
uv sync --locked --quiet
exec uv run --locked --no-sync python scripts/demo.py "$@"
