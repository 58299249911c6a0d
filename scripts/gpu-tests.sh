#!/usr/bin/env bash
# The GPU tests (pytest marker `gpu`) with the torch already installed: no uv, no network.
# This is what `nox -s gpu` runs; on the GPU machine run it directly:
#   bash scripts/gpu-tests.sh [pytest args]
# If the bnb packages are not importable yet it sets them up with scripts/gpu-env.sh
# (cmake build of the native library, PYTHONPATH to every src/).
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if ! "$PY" -c "import bnb_kernels, bnb_quant" 2>/dev/null; then
  export PYTHON="$PY"
  # shellcheck source=scripts/gpu-env.sh
  source "$ROOT/scripts/gpu-env.sh"
fi
"$PY" -c "import torch; print('torch', torch.__version__, '| cuda:', torch.cuda.is_available() and torch.cuda.get_device_name())"
exec "$PY" -m pytest -m gpu -ra -p no:cacheprovider "$@"
