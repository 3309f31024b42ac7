#!/usr/bin/env bash
# The virtual environment .venv with the pinned dependencies and the package, made when it is missing
# or when requirements.txt or pyproject.toml changed since (a stamp in .venv says which); else nothing.
# The run and test scripts call it first, so a fresh clone needs no separate setup step.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
if [ -f .venv/.setup-stamp ] && [ "$(cat .venv/.setup-stamp)" = "$stamp" ]; then
    exit 0
fi
echo "setting up .venv (the pinned dependencies: about 2.5 minutes, 6 GB, once)" >&2
python3 -m venv .venv
.venv/bin/pip install --upgrade-strategy only-if-needed -r requirements.txt -e .
echo "$stamp" > .venv/.setup-stamp
