#!/usr/bin/env bash
# Set up a fresh machine: system packages (PostgreSQL, RabbitMQ, Chromium for the viewer
# tests), a virtualenv in .venv and sealog with every extra. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ] || need+=(rabbitmq-server)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(npm)  # axe-core for the viewer tests
if [ "${#need[@]}" -gt 0 ] && [ "${1:-}" != "--python-only" ]; then
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  # The packages start system-wide services; the tests start their own on loopback.
  $SUDO service postgresql stop >/dev/null 2>&1 || true
  $SUDO service rabbitmq-server stop >/dev/null 2>&1 || true
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -e '.[all,test]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import sealog, psycopg, pika, starlette' >/dev/null
# axe-core for the viewer's accessibility tests (pinned in tests/server/package-lock.json).
if [ "${1:-}" != "--python-only" ]; then
  (cd tests/server && npm ci --no-audit --no-fund --silent >/dev/null)
fi
