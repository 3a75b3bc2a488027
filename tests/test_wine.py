"""Cross-compiles the native core tests for Windows (mingw-w64, IOCP
backend) and runs them under Wine.  Selected with `pytest -m wine`."""
import os

import pytest

import native_build as nb

pytestmark = pytest.mark.wine

NAMES = nb.scenario_names("windows")


@pytest.fixture(scope="module")
def wine_run(tmp_path_factory):
    """Builds the program once and runs every scenario in one Wine process
    (Wine's start-up costs seconds); returns (exit code, output)."""
    if nb.skip_reason():
        pytest.skip(nb.skip_reason())
    if not nb.have_mingw():
        pytest.skip(f"{nb.MINGW_CC} not found (apt-get install gcc-mingw-w64-x86-64)")
    if not nb.have_wine():
        pytest.skip(f"{nb.WINE} not found (apt-get install wine64)")
    exe = nb.build("windows", tmp_path_factory.mktemp("wine"))
    env = dict(os.environ, WINEDEBUG="-all")
    return nb.run([nb.wine_command(), str(exe)], timeout=600, env=env)


@pytest.mark.parametrize("name", NAMES)
def test_scenario(wine_run, name):
    nb.check_result(name, *wine_run)


def test_all_passed(wine_run):
    code, out = wine_run
    assert f"{len(NAMES)} passed, 0 failed" in out, out
    assert code == 0, out
