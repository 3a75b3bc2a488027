"""Builds and runs the native iocore test program (tests/native/) for the
host (gcc, epoll) or for Windows (mingw-w64, IOCP, run under Wine).

Shared by test_native.py and test_wine.py; not a test module itself."""
import os
import re
import runpy
import shlex
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "src" / "_iocore"
NATIVE = ROOT / "tests" / "native"
TEST_SOURCE = NATIVE / "iocore_tests.c"

_SOURCES = runpy.run_path(str(CORE / "sources.py"))
CORE_SOURCES = _SOURCES["CORE"]
BACKENDS = _SOURCES["PLATFORM"]
WINDOWS_ONLY = {"win_error_map"}
MINGW_CC = "x86_64-w64-mingw32-gcc"
WINE = "/usr/lib/wine/wine64"


def scenario_names(target):
    """The scenarios the program registers for target, read from its case table."""
    text = TEST_SOURCE.read_text()
    table = text[text.index("static const t_case cases[]"):]
    names = re.findall(r'\{"(\w+)", test_\w+, \d+\}', table)
    return [n for n in names if target == "windows" or n not in WINDOWS_ONLY]


def build(target, out_dir):
    """Compiles the program into out_dir and returns its path."""
    sources = [str(CORE / s) for s in CORE_SOURCES + BACKENDS[target]]
    common = ["-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter",
              f"-I{CORE}", f"-I{NATIVE}", str(TEST_SOURCE), *sources]
    if target == "linux":
        exe = Path(out_dir) / "iocore_tests"
        # CC may carry flags, e.g. CC="gcc -fsanitize=address,undefined"
        cmd = [*shlex.split(os.environ.get("CC", "gcc")), *common, "-lpthread", "-o", str(exe)]
    else:
        exe = Path(out_dir) / "iocore_tests.exe"
        cmd = [MINGW_CC, "-D_WIN32_WINNT=0x0602", "-DWIN32_LEAN_AND_MEAN", *common,
               "-static", "-lws2_32", "-lmswsock", "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"build failed:\n{' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
    # The mingw toolchain is pinned by CI, so its warnings are errors; a
    # host gcc (any version, e.g. in a manylinux container) only reports them.
    warnings = [line for line in proc.stderr.splitlines() if "warning:" in line]
    if warnings and target == "windows":
        raise AssertionError("compiler warnings:\n" + "\n".join(warnings))
    for line in warnings:
        print(line)
    return exe


def skip_reason():
    """Why the program cannot be built here, or None."""
    if not CORE.is_dir():
        return f"no C sources at {CORE} (testing an installed package)"
    return None


def run(cmd, timeout, env=None):
    """Runs the program; returns (exit code, output).  A hang fails, not blocks."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=env, errors="replace")
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise AssertionError(f"{cmd} did not finish in {timeout}s; output so far:\n{out}") from None
    return proc.returncode, proc.stdout + proc.stderr


def check_result(name, code, output):
    assert f"PASS {name} " in output, f"scenario {name} did not pass:\n{output}"
    assert code == 0, f"exit status {code}:\n{output}"


def have_mingw():
    return shutil.which(MINGW_CC) is not None


def have_wine():
    return os.access(WINE, os.X_OK) or shutil.which("wine64") is not None


def wine_command():
    return WINE if os.access(WINE, os.X_OK) else shutil.which("wine64")
