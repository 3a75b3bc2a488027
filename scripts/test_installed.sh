#!/usr/bin/env bash
# Runs tests against an *installed* netcore, not the checkout:
#   scripts/test_installed.sh VENV_PYTHON [pytest arguments...]
# tests/, examples/ and pyproject.toml (the pytest settings) are copied to a
# temporary directory with no src/ in it and pytest runs there; before that
# the script checks that `import netcore` (and both extensions) resolve to
# the venv's site-packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")   # absolute, symlink kept (a venv's python)
shift
work=$(mktemp -d "${TMPDIR:-/tmp}/netcore-installed.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r tests examples pyproject.toml "$work/"
cd "$work"
"$PY" - <<'EOF'
import os, sysconfig
import netcore, netcore._http, netcore._iocore
site = os.path.realpath(sysconfig.get_paths()["purelib"])
for mod in (netcore, netcore._http, netcore._iocore):
    path = os.path.realpath(mod.__file__)
    assert path.startswith(site + os.sep), f"{mod.__name__} comes from {path}, not {site}"
print(f"testing the installed netcore {netcore.__version__} in {site}")
EOF
# Left out: the tests that build the C core from src/ (test_native, test_wine)
# and the benchmark suite's own tests (benchmarks/ is not in the wheel); they
# test the checkout, not the installed package, and the main run has them.
NETCORE_TEST_INSTALLED=1 "$PY" -m pytest -p no:cacheprovider -ra \
    --ignore=tests/test_native.py --ignore=tests/test_wine.py --ignore=tests/bench "$@"
