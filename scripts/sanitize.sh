#!/usr/bin/env bash
# The extensions under AddressSanitizer + UndefinedBehaviorSanitizer, and
# the native C scenarios under valgrind memcheck:
#   1. build netcore with NETCORE_SANITIZE=address,undefined into its own
#      venv (build/sanitize-venv; objects in build/sanitize-address-undefined);
#   2. run the core suite, the native C scenarios (the test program built
#      with the same sanitizers) and the HTTP suite against that build, with
#      libasan preloaded into Python; every process, subprocess servers
#      included, writes its reports to a log directory, and any report
#      fails the run (UBSan also aborts at its first finding);
#   3. run the native scenarios once under valgrind (no sanitizers there).
# Extra arguments go to pytest.  Takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SAN=address,undefined
venv=build/sanitize-venv
logs=$PWD/build/sanitize-logs
rm -rf "$logs"
mkdir -p "$logs"

echo "== build with -fsanitize=$SAN"
if [ ! -x "$venv/bin/python" ]; then
    "$PY" -m venv "$venv"
fi
"$venv/bin/pip" install -q --upgrade setuptools Cython
NETCORE_SANITIZE=$SAN "$venv/bin/pip" install -q --no-build-isolation ".[test]" \
    >"$logs/../sanitize-build.log" 2>&1 || { tail -30 "$logs/../sanitize-build.log"; exit 1; }

libasan=$(gcc -print-file-name=libasan.so)
[ -e "$libasan" ] || { echo "libasan not found (gcc -print-file-name=libasan.so)"; exit 1; }
san_cc="gcc -fsanitize=$SAN -fno-sanitize-recover=all -fno-omit-frame-pointer"

run_sanitized() {
    # Python itself is not instrumented: its leaks at exit are not ours
    # (detect_leaks=0), and PYTHONMALLOC=malloc puts Python's objects on
    # the heap ASan watches, so an overrun of a bytes buffer is caught.
    env LD_PRELOAD="$libasan" PYTHONMALLOC=malloc CC="$san_cc" \
        ASAN_OPTIONS="detect_leaks=0:log_path=$logs/asan:strict_string_checks=1:detect_stack_use_after_return=1" \
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan" \
        "$@"
}

run_sanitized "$venv/bin/python" -c '
import netcore, netcore._http, netcore._iocore, sys
assert "sanitize-venv" in netcore._iocore.__file__ and "sanitize-venv" in netcore._http.__file__, \
    (netcore._iocore.__file__, netcore._http.__file__)
print("testing the sanitizer build:", netcore._iocore.__file__)
'

echo "== core, native and HTTP suites under ASan+UBSan"
status=0
run_sanitized "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_iocore.py tests/test_iocore_limits.py tests/test_iocore_options.py tests/test_native.py \
    tests/http "$@" || status=$?

reports=$(find "$logs" -type f | sort)
if [ -n "$reports" ]; then
    echo "== sanitizer reports:"
    for f in $reports; do
        echo "--- $f"
        head -60 "$f"
    done
    exit 1
fi
[ "$status" = 0 ] || exit "$status"
echo "no sanitizer reports"

echo "== native scenarios under valgrind memcheck"
vdir=$(mktemp -d "${TMPDIR:-/tmp}/netcore-valgrind.XXXXXX")
trap 'rm -rf "$vdir"' EXIT
exe=$("$PY" -c 'import sys; sys.path.insert(0, "tests"); import native_build as nb; print(nb.build("linux", sys.argv[1]))' "$vdir")
valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
    --show-leak-kinds=definite "$exe" >"$vdir/out.txt" 2>&1 || { cat "$vdir/out.txt"; echo "valgrind: failed"; exit 1; }
grep -v '^==' "$vdir/out.txt" | tail -1
