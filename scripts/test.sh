#!/usr/bin/env bash
# Set up (see install.sh) and run the whole check: lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/pytest -q --durations=20 "$@"
