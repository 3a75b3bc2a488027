"""Runs a WSGI app on fastwsgi with the suite's settings.

fastwsgi's module imports pkg_resources (for its version string only),
which recent setuptools no longer ships; a stand-in module is put in its
place when the real one is missing.  TCP_NODELAY is switched on, as every
other server in the suite has it: with Nagle's algorithm a pipelined or
keep-alive client waits on delayed ACKs.

    python fastwsgi_serve.py MODULE:APP --port P
"""
from __future__ import annotations

import argparse
import importlib
import sys
import types


def _import_fastwsgi():
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        from importlib.metadata import version

        stub = types.ModuleType("pkg_resources")
        stub.get_distribution = lambda name: types.SimpleNamespace(version=version(name))
        sys.modules["pkg_resources"] = stub
    import fastwsgi
    return fastwsgi


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("app")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    module, _, attr = args.app.partition(":")
    app = getattr(importlib.import_module(module), attr)
    fastwsgi = _import_fastwsgi()
    fastwsgi.server.tcp_nodelay = 1
    fastwsgi.server.backlog = 4096
    fastwsgi.server.loglevel = fastwsgi.LL_ERROR
    fastwsgi.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
