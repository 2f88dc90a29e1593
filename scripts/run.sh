#!/usr/bin/env bash
# Set up and run the main job: the service and viewer on the embedded SQLite store
# (./sealog.db), with a demo tenant whose API key is printed for the sign-in page.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --python-only
exec .venv/bin/sealog serve --demo "$@"
