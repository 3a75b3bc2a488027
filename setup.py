"""Builds netcore's two extensions:

- netcore._iocore: the Cython wrapper plus the C core and the backend files
  of the platform being built for (the BACKENDS table below);
- netcore._http: the HTTP hot paths in plain C (no platform code).

NETCORE_SANITIZE=address,undefined (any -fsanitize= list) builds both with
those sanitizers into build/sanitize-*/ so the objects never mix with a
normal build; scripts/sanitize.sh and scripts/fuzz.sh use it.
"""
import glob
import os
import re
import sys

from setuptools import Extension, setup

CORE = "src/_iocore"

# The portable POSIX backend (issue 10): every POSIX platform gets it, as
# the fallback where no native event model is built.  Not written yet; when
# unix/poll.c lands, this line becomes POSIX_PORTABLE = ["unix/poll.c"].
POSIX_PORTABLE: list = []

# Platform family -> the event backends built there.  One row per family, so
# no platform's backend (and none of its headers) reaches another's build.
BACKENDS = {
    "linux": ["unix/epoll.c", *POSIX_PORTABLE],
    "darwin": [*POSIX_PORTABLE],          # kqueue would go here
    "bsd": [*POSIX_PORTABLE],             # kqueue would go here
    "posix": [*POSIX_PORTABLE],           # any other POSIX system
    "win32": ["win/iocp.c"],
}
# Socket calls, shared by the backends of one family.
SOCKETS = {"win32": "win/sock.c"}         # everything else: unix/sock.c
CORE_SOURCES = ["_iocore.pyx", "core/queue.c", "core/timers.c", "core/errors.c"]


def platform_family(platform: str = sys.platform) -> str:
    if platform == "win32":
        return "win32"
    if platform.startswith("linux"):
        return "linux"
    if platform == "darwin":
        return "darwin"
    if platform.startswith(("freebsd", "openbsd", "netbsd", "dragonfly")):
        return "bsd"
    return "posix"


def backend_sources(family: str) -> list:
    backends = BACKENDS[family]
    if not backends:
        raise RuntimeError(
            f"netcore has no I/O backend for {sys.platform} yet: it needs the portable poll() "
            f"backend, {CORE}/unix/poll.c, which is not written (Linux and Windows build today)")
    return [*backends, SOCKETS.get(family, "unix/sock.c")]


def compile_options(family: str) -> dict:
    if family == "win32":
        return {"libraries": ["ws2_32", "mswsock"],
                "define_macros": [("WIN32_LEAN_AND_MEAN", None), ("_WIN32_WINNT", "0x0602")],
                "extra_compile_args": [], "extra_link_args": []}
    cflags = ["-std=gnu11", "-O2", "-fno-strict-aliasing"]
    ldflags = []
    sanitize = os.environ.get("NETCORE_SANITIZE", "").strip()
    if sanitize:
        # -O1 and frame pointers keep reports readable; a UBSan finding
        # aborts (no recovery), so it cannot scroll past unnoticed.
        cflags = ["-std=gnu11", "-O1", "-g", "-fno-omit-frame-pointer", "-fno-strict-aliasing",
                  f"-fsanitize={sanitize}", "-fno-sanitize-recover=all"]
        ldflags = [f"-fsanitize={sanitize}"]
    return {"libraries": [], "define_macros": [], "extra_compile_args": cflags,
            "extra_link_args": ldflags}


def build_options() -> dict:
    """A sanitizer build gets its own build directory."""
    sanitize = os.environ.get("NETCORE_SANITIZE", "").strip()
    if not sanitize:
        return {}
    return {"build": {"build_base": "build/sanitize-" + re.sub(r"[^a-z0-9]+", "-", sanitize)}}


def extensions() -> list:
    from Cython.Build import cythonize

    family = platform_family()
    options = compile_options(family)
    core = Extension(
        "netcore._iocore",
        sources=[os.path.join(CORE, s) for s in CORE_SOURCES + backend_sources(family)],
        include_dirs=[CORE, os.path.join(CORE, "includes")],
        # a header change rebuilds (setuptools compares only these and sources)
        depends=sorted(glob.glob(os.path.join(CORE, "**", "*.h"), recursive=True)),
        **options,
    )
    # HTTP hot-path helpers (plain C API); netcore.http falls back to pure
    # Python when this module is missing.  Kept apart from the
    # protocol-agnostic core above.
    http = Extension("netcore._http", sources=sorted(glob.glob("src/_http/*.c")),
                     depends=["src/_http/http.h"],
                     extra_compile_args=options["extra_compile_args"],
                     extra_link_args=options["extra_link_args"])
    return cythonize(
        [core],
        include_path=[CORE, os.path.join(CORE, "includes")],
        compiler_directives={"language_level": "3"},
    ) + [http]


if __name__ == "__main__":
    setup(ext_modules=extensions(), options=build_options())
