#!/usr/bin/env bash
# One-time setup: a virtual environment in .venv with the pinned dependencies and the package.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --upgrade-strategy only-if-needed -r requirements.txt -e .
