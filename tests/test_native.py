"""Runs the native C tests of the core (tests/native/iocore_tests.c) built
with the host compiler against the epoll backend, one pytest test per
scenario, each in its own process with a timeout."""
import shutil
import sys

import pytest

import native_build as nb

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the native tests build the epoll backend (Linux only)")

NAMES = nb.scenario_names("linux")


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    if nb.skip_reason():
        pytest.skip(nb.skip_reason())
    if shutil.which("gcc") is None and "CC" not in __import__("os").environ:
        pytest.skip("no C compiler (gcc) to build tests/native")
    return nb.build("linux", tmp_path_factory.mktemp("native"))


def test_scenarios_listed(program):
    code, out = nb.run([str(program), "--list"], timeout=30)
    assert code == 0
    assert out.split() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_scenario(program, name):
    code, out = nb.run([str(program), "--only", name], timeout=120)
    nb.check_result(name, code, out)


def test_unknown_scenario_fails(program):
    code, out = nb.run([str(program), "--only", "no_such_scenario"], timeout=30)
    assert code != 0 and "FAIL no_such_scenario" in out
