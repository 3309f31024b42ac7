#!/usr/bin/env bash
# ViT-bigG-14 on one CUDA device through the shipped code paths: gallery encoding, training with the
# bigG preset, augmentation; rates as fractions of the bf16 peak; JSON to --out ($OUT or log/).
# Without CUDA it says so and exits 0. Arguments go to benchmarks/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3   # a GPU machine with torch installed system-wide
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_check.py "$@"
