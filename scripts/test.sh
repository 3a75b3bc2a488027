#!/usr/bin/env bash
# Sets up .venv and runs the whole test suite (the Wine tests skip, saying
# why, where mingw-w64 or wine64 is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -ra "$@"
