"""Runs the native C tests of the core (tests/native/iocore_tests.c) built
with the host compiler, on every Linux backend this machine has (epoll,
io_uring), one pytest test per scenario and backend, each in its own
process with a timeout."""
import os
import shlex
import shutil
import subprocess
import sys

import pytest

import native_build as nb
from netcore import iocore

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the native tests build the Linux backends")

NAMES = nb.scenario_names("linux")
# (backend, extra environment): io_uring also as before Linux 6.0, without
# multishot recv (its test hook).
VARIANTS = {b: (b, {}) for b in iocore.backends() if b != "iocp"}
if "uring" in VARIANTS:
    VARIANTS["uring-oneshot-recv"] = ("uring", {"NETCORE_URING_NO_MULTISHOT_RECV": "1"})


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    if nb.skip_reason():
        pytest.skip(nb.skip_reason())
    if shutil.which("gcc") is None and "CC" not in os.environ:
        pytest.skip("no C compiler (gcc) to build tests/native")
    return nb.build("linux", tmp_path_factory.mktemp("native"))


def test_scenarios_listed(program):
    code, out = nb.run([str(program), "--list"], timeout=30)
    assert code == 0
    assert out.split() == NAMES


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("name", NAMES)
def test_scenario(program, name, variant):
    backend, env = VARIANTS[variant]
    code, out = nb.run([str(program), "--only", name, "--backend", backend], timeout=120,
                       env=dict(os.environ, **env))
    nb.check_result(name, code, out)


def test_uring_abi_matches_the_kernel_header():
    """unix/uring_abi.h declares the io_uring ABI itself; the kernel's
    uapi header, where installed, must agree on every layout and number."""
    if not os.path.exists("/usr/include/linux/io_uring.h"):
        pytest.skip("no <linux/io_uring.h> here (apt-get install linux-libc-dev)")
    proc = subprocess.run([*shlex.split(os.environ.get("CC", "gcc")), "-std=gnu11", "-fsyntax-only",
                           "-include", "sys/syscall.h", f"-I{nb.CORE}",
                           str(nb.NATIVE / "uring_abi_check.c")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_unknown_scenario_fails(program):
    code, out = nb.run([str(program), "--only", "no_such_scenario"], timeout=30)
    assert code != 0 and "FAIL no_such_scenario" in out
