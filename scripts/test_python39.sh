#!/usr/bin/env bash
# Builds netcore on Python 3.9, the oldest that pyproject.toml declares
# (scripts/python39.sh finds or fetches the interpreter), in a fresh venv,
# and runs against that install: the extension checks, the C fast paths
# against the Python parser, real servers through the CLI (fork and spawn
# workers), the WSGI and ASGI front ends (so every module is imported on
# 3.9) and the core suite.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
py39=$(scripts/python39.sh)
"$py39" -c 'import sys; assert sys.version_info[:2] == (3, 9), sys.version'
venv=build/py39-venv
rm -rf "$venv"
"$py39" -m venv --without-pip "$venv"
# Debian's python3.9 has no ensurepip wheels: this machine's pip installs pip
# into the 3.9 venv (pip's --python runs it under the target interpreter).
"${PYTHON:-python3}" -m pip --python "$venv/bin/python" install -q pip
"$venv/bin/pip" install -q setuptools Cython pytest pytest-timeout h11
"$venv/bin/pip" install -q --no-build-isolation --no-deps . >build/py39-build.log 2>&1 \
    || { tail -30 build/py39-build.log; exit 1; }
t=tests/http
scripts/test_installed.sh "$venv/bin/python" -q tests/test_packaging.py tests/test_iocore.py \
    $t/test_head_fast.py $t/test_json_fast.py $t/test_free_threading.py $t/test_cli.py \
    $t/test_workers.py $t/test_wsgi.py $t/test_asgi.py "$@"
