#!/usr/bin/env bash
# The main job: execute notebooks/reproduce.ipynb end to end (synthetic data, tiny model, CPU).
# Extra arguments go to papermill, e.g. -p run_name seed1 -p seed 1. A run folder records the
# parameters it was made with: re-running over it with other ones stops with a message saying what
# differs, so give such a run its own run_name. Each execution is kept, never overwritten, as
# log/notebooks/reproduce-DATE-TIME.ipynb.
# .venv is set up first when it is missing (script/setup.sh), so a fresh clone needs this command alone.
set -euo pipefail
cd "$(dirname "$0")/.."
bash script/setup.sh
mkdir -p log/notebooks
.venv/bin/papermill --log-output --progress-bar notebooks/reproduce.ipynb \
    "log/notebooks/reproduce-$(date +%Y%m%d-%H%M%S).ipynb" "$@"
