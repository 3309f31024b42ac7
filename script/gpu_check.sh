#!/usr/bin/env bash
# ViT-bigG-14 on one CUDA device: training steps (AMP, with and without gradient checkpointing) and
# bf16 gallery encoding; prints peak memory, samples/s, images/s. Arguments go to benchmarks/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python benchmarks/gpu_check.py "$@"
