#!/usr/bin/env bash
# Sets up .venv and serves the example app on http://127.0.0.1:8000
# (extra arguments go to the server).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python examples/echo_server.py "$@"
