#!/usr/bin/env bash
# What a transformers/PEFT user sees, on the GPU machine (no network, no uv): the diagnostics,
# the tests-integration flows (tiny models load on CUDA there) and the demo, logs in $OUT.
#   run(command="bash scripts/gpu-check-integration.sh", carry=[".device"], timeout_s=600)
# peft and accelerate must be importable there: if they are not, they are installed from the
# carried wheels in .device/wheels, fetched on a machine with PyPI with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux_2_28_x86_64 -d .device/wheels peft accelerate psutil
set -o pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-/tmp/bnb-integration-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHON="$PY"
# shellcheck source=scripts/gpu-env.sh
source "$ROOT/scripts/gpu-env.sh" 2>&1 | tee "$OUT/setup.txt"
export PYTHONPATH="$ROOT/src:$ROOT/packages/bnb-kernels/src:$ROOT/packages/bnb-quant/src:$ROOT/packages/bnb-nn/src:$ROOT/packages/bnb-optim/src:$ROOT/packages/bnb-diagnostics/src:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# accelerate (and transformers, partly) read the bitsandbytes version from installed metadata:
# give the source trees minimal dist-info records, as an install would.
"$PY" - "$ROOT" <<'PYEOF'
import pathlib, sys, tomllib
root = pathlib.Path(sys.argv[1])
meta = root / "build" / "dist-info"
for pyproject in [root / "pyproject.toml", *sorted(root.glob("packages/*/pyproject.toml"))]:
    project = tomllib.loads(pyproject.read_text())["project"]
    info = meta / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}"]
    lines += [f"Requires-Dist: {d}" for d in project.get("dependencies", [])]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
PYEOF
export PYTHONPATH="$ROOT/build/dist-info:$PYTHONPATH"
if ! "$PY" -c "import peft, accelerate" 2>/dev/null && [ -d "$ROOT/.device/wheels" ]; then
  "$PY" -c "import psutil" 2>/dev/null || "$PY" -m pip install --quiet --no-index --find-links "$ROOT/.device/wheels" psutil 2>&1 | tail -3
  "$PY" -m pip install --quiet --no-index --find-links "$ROOT/.device/wheels" --no-deps peft accelerate 2>&1 | tail -3
fi
"$PY" -c "import transformers, peft, accelerate; print('transformers', transformers.__version__, '| peft', peft.__version__, '| accelerate', accelerate.__version__)" 2>&1 | tee -a "$OUT/setup.txt"
"$PY" -m bitsandbytes 2>&1 | tee "$OUT/diagnostics.txt"
echo "diagnostics exit: ${PIPESTATUS[0]}" | tee -a "$OUT/diagnostics.txt"
timeout 330 "$PY" -m pytest tests-integration -ra -q -p no:cacheprovider --durations=10 2>&1 | tail -80 | tee "$OUT/integration.txt"
timeout 180 "$PY" scripts/demo.py --quiet --out /tmp/bnb-demo 2>&1 | tee "$OUT/demo.txt"
echo "demo exit: ${PIPESTATUS[0]}" | tee -a "$OUT/demo.txt"
