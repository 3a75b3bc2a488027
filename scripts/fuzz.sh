#!/usr/bin/env bash
# Coverage-guided fuzzing of the HTTP parsers (tests/fuzz/fuzz_http.py):
# atheris drives libFuzzer; netcore is built with clang,
# -fsanitize=address,undefined,fuzzer-no-link into build/fuzz-venv, so the
# C head parser reports its coverage and its memory errors, and atheris
# instruments the Python parser.
#   scripts/fuzz.sh                      # 45 s (.ci/run sets FUZZ_SECONDS=30)
#   FUZZ_SECONDS=3600 scripts/fuzz.sh    # a long run
#   scripts/fuzz.sh -jobs=2 -workers=2   # extra arguments go to libFuzzer
# New inputs go to build/fuzz-corpus (seeded from tests/fuzz/corpus, which
# stays as committed); a finding is saved under build/fuzz-artifacts/ and
# fails the run.  Reproduce one with: scripts/fuzz.sh build/fuzz-artifacts/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
venv=build/fuzz-venv
command -v clang >/dev/null || { echo "clang is needed (apt-get install clang libclang-rt-14-dev)"; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
    "$PY" -m venv "$venv"
fi
"$venv/bin/pip" install -q --upgrade atheris setuptools Cython
CC=clang NETCORE_SANITIZE=address,undefined,fuzzer-no-link \
    "$venv/bin/pip" install -q --no-build-isolation --no-deps --force-reinstall . \
    >build/fuzz-build.log 2>&1 || { tail -30 build/fuzz-build.log; exit 1; }
runtime=$("$venv/bin/python" -c 'import atheris, os; print(os.path.join(atheris.path(), "asan_with_fuzzer.so"))')
mkdir -p build/fuzz-corpus build/fuzz-artifacts
args=("$@")
if [ ${#args[@]} -eq 0 ] || [[ "${args[0]}" == -* ]]; then
    args=(-max_total_time="${FUZZ_SECONDS:-45}" -timeout=10 -rss_limit_mb=4096 -dict=tests/fuzz/http.dict
          -artifact_prefix=build/fuzz-artifacts/ "${args[@]}" build/fuzz-corpus tests/fuzz/corpus)
fi
# Python's own allocations are not ours to leak-check; a small quarantine
# keeps memory flat over long runs.
LD_PRELOAD=$runtime \
ASAN_OPTIONS=detect_leaks=0:quarantine_size_mb=32:malloc_context_size=10 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$venv/bin/python" tests/fuzz/fuzz_http.py -print_final_stats=1 "${args[@]}"
