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
import runpy
import sys

from setuptools import Extension, setup

CORE = "src/_iocore"
SOURCES = runpy.run_path(os.path.join(CORE, "sources.py"))

CORE_SOURCES = ["_iocore.pyx", *SOURCES["CORE"]]
BACKENDS = SOURCES["PLATFORM"]            # platform family -> its backend files
POSIX_PORTABLE = SOURCES["POSIX_PORTABLE"]


def platform_family(platform: str = sys.platform) -> str:
    return SOURCES["family"](platform)


def backend_sources(family: str) -> list:
    backends = BACKENDS[family]
    if not backends:
        raise RuntimeError(
            f"netcore has no I/O backend for {sys.platform} yet: it needs the portable poll() "
            f"backend, {CORE}/unix/poll.c, which is not written (Linux and Windows build today)")
    return backends


def compile_options(family: str) -> dict:
    if family == "windows":
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
