#!/usr/bin/env bash
# Set up and run the main job on the embedded SQLite store.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --python-only
exec .venv/bin/sealog demo "$@"
