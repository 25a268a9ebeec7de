#!/usr/bin/env bash
# The prepared GPU check (see benchmarks/gpu_check.py): run from the repo root on a machine with one
# CUDA GPU, CUDA torch, transformers, pyarrow, typer, rich, safetensors and scikit-learn; no package
# registry and no model weights are needed. segtool runs from this checkout (PYTHONPATH); a `segtool`
# shim goes on PATH for the tests that start it by name. Everything must finish within 8 minutes.
#   bash benchmarks/gpu_check.sh            # tests on the device's Python, then the checks
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p /tmp/segtool-bin && printf '#!/bin/sh\nexec %s -m segtool "$@"\n' "$PY" > /tmp/segtool-bin/segtool
chmod +x /tmp/segtool-bin/segtool && export PATH=/tmp/segtool-bin:$PATH
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
status=0
# The model, packing, precision and training-toolkit tests (CPU math the GPU paths share; ~1 min).
timeout 150 "$PY" -m pytest -q -x -p no:cacheprovider tests/core tests/models tests/training || status=1
timeout 330 "$PY" benchmarks/gpu_check.py "$@" || status=1
exit $status
