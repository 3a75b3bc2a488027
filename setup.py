"""Builds netcore._iocore: the Cython wrapper plus the C core, with the
backend files of the platform being built for."""
import os
import runpy
import sys

from setuptools import Extension, setup

CORE = "src/_iocore"
SOURCES = runpy.run_path(os.path.join(CORE, "sources.py"))

if sys.platform == "win32":
    backend_sources = SOURCES["PLATFORM"]["windows"]
    libraries = ["ws2_32", "mswsock"]
    macros = [("WIN32_LEAN_AND_MEAN", None), ("_WIN32_WINNT", "0x0602")]
    extra_compile_args = []
elif sys.platform.startswith("linux"):
    backend_sources = SOURCES["PLATFORM"]["linux"]
    libraries = []
    macros = []
    extra_compile_args = ["-std=gnu11", "-O2", "-fno-strict-aliasing"]
else:
    raise RuntimeError(f"netcore has no I/O backend for {sys.platform} yet (Linux and Windows are supported)")

sources = ["_iocore.pyx", *SOURCES["CORE"], *backend_sources]

ext = Extension(
    "netcore._iocore",
    sources=[os.path.join(CORE, s) for s in sources],
    include_dirs=[CORE, os.path.join(CORE, "includes")],
    libraries=libraries,
    define_macros=macros,
    extra_compile_args=extra_compile_args,
)


# HTTP hot-path helpers (plain C API); netcore.http falls back to pure
# Python when this module is missing.  Kept apart from the protocol-agnostic
# core above.
http_ext = Extension(
    "netcore._http",
    sources=["src/_http/_http.c"],
    extra_compile_args=extra_compile_args,
)


def extensions():
    from Cython.Build import cythonize

    return cythonize(
        [ext],
        include_path=[CORE, os.path.join(CORE, "includes")],
        compiler_directives={"language_level": "3"},
    ) + [http_ext]


setup(ext_modules=extensions())
