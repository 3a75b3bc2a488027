#!/usr/bin/env bash
# Sets up .venv and serves the example app (examples/hello.py) on
# http://127.0.0.1:8000 (/plaintext, /json); extra arguments go to the CLI,
# e.g. scripts/serve.sh --port 9000 --workers 2.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/netcore examples.hello:app "$@"
