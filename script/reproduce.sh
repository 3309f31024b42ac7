#!/usr/bin/env bash
# The main job: execute notebooks/reproduce.ipynb end to end (synthetic data, tiny model, CPU).
# Extra arguments go to papermill, e.g. -p run_name other -p seed 1.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p log/reproduce
.venv/bin/papermill --log-output --progress-bar notebooks/reproduce.ipynb log/reproduce/reproduce.ipynb "$@"
