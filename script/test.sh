#!/usr/bin/env bash
# The test suite (offline; the slow end-to-end tests included), after setting up .venv if it is missing.
# Arguments go to pytest, e.g. -m "not slow" for the fast tests alone.
set -euo pipefail
cd "$(dirname "$0")/.."
bash script/setup.sh
exec .venv/bin/python -m pytest "$@"
