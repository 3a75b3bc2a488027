"""Packaging: the extensions import on every supported Python, setup.py's
backend table, and (when scripts/test_installed.sh runs the suite) that the
installed package is the one under test."""
import importlib.util
import os
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "setup.py"
CORE = ROOT / "src" / "_iocore"


def test_both_extensions_import():
    # Not importorskip: a missing _http silently switches the C fast paths
    # off (as Py_NewRef did on Python 3.9), which must fail here.
    import netcore._http
    import netcore._iocore

    assert netcore._http.json_simple({"a": [1, None]}) == b'{"a":[1,null]}'
    assert netcore._iocore.backends()


@pytest.mark.skipif(not os.environ.get("NETCORE_TEST_INSTALLED"),
                    reason="only when testing an installed wheel (scripts/test_installed.sh, cibuildwheel)")
def test_the_installed_package_is_under_test():
    import netcore
    import netcore._iocore

    sites = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    for mod in (netcore, netcore._iocore):
        path = os.path.realpath(mod.__file__)
        assert any(path.startswith(s + os.sep) for s in sites), (path, sites)


@pytest.fixture(scope="module")
def setup_py():
    if not SETUP.exists():
        pytest.skip("setup.py is not here (testing an installed package)")
    spec = importlib.util.spec_from_file_location("netcore_setup", SETUP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the __main__ guard keeps setup() from running
    return module


@pytest.mark.parametrize("platform, family", [
    ("linux", "linux"), ("win32", "windows"), ("darwin", "darwin"), ("freebsd14", "bsd"),
    ("openbsd7", "bsd"), ("netbsd10", "bsd"), ("dragonfly6", "bsd"), ("sunos5", "posix"),
])
def test_platform_families(setup_py, platform, family):
    assert setup_py.platform_family(platform) == family


def test_each_platform_builds_only_its_own_backend_files(setup_py):
    linux = setup_py.backend_sources("linux")
    assert {"unix/epoll.c", "unix/stream.c", "unix/uring.c", "unix/sock.c"} <= set(linux)
    assert setup_py.backend_sources("windows") == ["win/iocp.c", "win/sock.c"]
    for family in setup_py.BACKENDS:
        try:
            files = setup_py.backend_sources(family)
        except RuntimeError:
            continue
        own = "win/" if family == "windows" else "unix/"
        assert all(f.startswith(own) for f in files), (family, files)
        for f in files:
            assert (CORE / f).is_file(), f


@pytest.mark.parametrize("family", ["darwin", "bsd", "posix"])
def test_posix_without_poll_backend_names_it(setup_py, family):
    if setup_py.POSIX_PORTABLE:
        pytest.skip("the poll() backend exists now")
    with pytest.raises(RuntimeError, match=r"unix/poll\.c"):
        setup_py.backend_sources(family)


def test_adding_poll_is_one_line(setup_py):
    # What the table becomes once POSIX_PORTABLE = ["unix/poll.c"]: every
    # POSIX platform builds, Windows is untouched.
    path = CORE / "sources.py"
    text = path.read_text()
    source = text.replace("POSIX_PORTABLE: list = []", 'POSIX_PORTABLE = ["unix/poll.c"]')
    if "unix/poll.c" in text.split("POSIX_PORTABLE", 2)[-1].split("\n", 1)[0]:
        source = text   # already there
    ns: dict = {}
    exec(compile(source, str(path), "exec"), ns)
    for family in ("linux", "darwin", "bsd", "posix"):
        files = ns["PLATFORM"][family]
        assert "unix/poll.c" in files and "unix/stream.c" in files and "unix/sock.c" in files
    assert ns["PLATFORM"]["windows"] == ["win/iocp.c", "win/sock.c"]


def test_sanitizer_builds_use_their_own_directory(setup_py, monkeypatch):
    monkeypatch.setenv("NETCORE_SANITIZE", "address,undefined")
    opts = setup_py.compile_options("linux")
    assert "-fsanitize=address,undefined" in opts["extra_compile_args"]
    assert "-fsanitize=address,undefined" in opts["extra_link_args"]
    assert setup_py.build_options() == {"build": {"build_base": "build/sanitize-address-undefined"}}
    monkeypatch.delenv("NETCORE_SANITIZE")
    assert setup_py.build_options() == {}
    assert not any("sanitize" in f for f in setup_py.compile_options("linux")["extra_compile_args"])
