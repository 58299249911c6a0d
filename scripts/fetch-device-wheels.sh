#!/usr/bin/env bash
# Downloads, on a machine with PyPI, the pure-Python wheels the GPU machine may lack, into
# .device/wheels (git-ignored; pass `carry: [".device"]` to the device run).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device/wheels
python3 -m pip download --quiet --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
  -d .device/wheels hypothesis sortedcontainers pytest pluggy iniconfig packaging attrs
ls .device/wheels
