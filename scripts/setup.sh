#!/usr/bin/env bash
# Creates .venv (once) and builds netcore into it, editable, with test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools Cython
# The benchmark peers are best effort: the tests never need them, and
# python -m benchmarks skips whichever is missing.
.venv/bin/python -m pip install -q -e ".[test,bench,chart]" || {
    echo "setup.sh: the benchmark peers did not install; installing the test tools only" >&2
    .venv/bin/python -m pip install -q -e ".[test]"
}
