"""Command line: ``netcore MODULE:APP [options]`` (also ``python -m netcore``).

Every option has an environment variable NETCORE_<OPTION> (dashes become
underscores, upper case), used when the option is not on the command line.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Optional, Sequence

from . import iocore
from .http.limits import INTERFACES, OPTIONS, PARSERS

_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off", ""}


def _env_name(name: str) -> str:
    return "NETCORE_" + name.upper()


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in _BOOL_TRUE:
        return True
    if t in _BOOL_FALSE:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="netcore",
        description="Serve a netcore application over HTTP/1.1.",
        epilog="Each option can also be set with an environment variable NETCORE_<OPTION>, "
               "e.g. NETCORE_PORT=8080 or NETCORE_ACCESS_LOG=1.",
    )
    p.add_argument("app", nargs="?", default=os.environ.get("NETCORE_APP"),
                   help="the application, as MODULE:ATTRIBUTE (env NETCORE_APP)")
    for name, (default, typ, help_text) in OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        text = f"{help_text} (default: {default!r}; env {_env_name(name)})"
        if typ is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            kwargs: dict[str, Any] = {}
            if name == "backend":
                kwargs["choices"] = ["auto", *iocore.KNOWN_BACKENDS, "io_uring"]
            elif name == "interface":
                kwargs["choices"] = list(INTERFACES)
            elif name == "http":
                kwargs["choices"] = list(PARSERS)
            elif name == "lifespan":
                kwargs["choices"] = ["auto", "on", "off"]
            elif name == "worker_start":
                kwargs["choices"] = ["auto", "fork", "spawn"]
            elif name == "log_level":
                kwargs["choices"] = ["critical", "error", "warning", "info", "debug"]
            p.add_argument(flag, dest=name, type=typ, default=None, help=text, **kwargs)
    p.add_argument("--app-dir", default=os.environ.get("NETCORE_APP_DIR", "."),
                   help="directory put first on sys.path before importing the app (default: .)")
    return p


def options_from(args: argparse.Namespace, environ: Optional[dict] = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name, (default, typ, _help) in OPTIONS.items():
        value = getattr(args, name)
        if value is None and _env_name(name) in env:
            raw = env[_env_name(name)]
            try:
                value = _parse_bool(raw) if typ is bool else typ(raw)
            except ValueError:
                raise ValueError(f"invalid {_env_name(name)}={raw!r}") from None
        if value is not None:
            out[name] = value
    return out


def load_app(spec: str, app_dir: str = ".") -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ImportError(f"app must look like MODULE:ATTRIBUTE, not {spec!r}")
    path = os.path.abspath(app_dir)
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name == module_name or (exc.name and module_name.startswith(exc.name + ".")):
            raise ImportError(f"cannot import module {module_name!r}: {exc}") from None
        raise
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ImportError(f"{spec!r} is not callable")
    return obj


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.app:
        parser.error("the application (MODULE:ATTRIBUTE) is required")
    try:
        options = options_from(args)
    except ValueError as exc:
        print(f"netcore: error: {exc}", file=sys.stderr)
        return 2
    try:
        app = load_app(args.app, args.app_dir)
    except Exception as exc:  # an import error of any kind: one line, non-zero exit
        print(f"netcore: error: cannot load {args.app!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    from .frontends.lifespan import StartupFailed
    from .http.workers import serve
    try:
        serve(app, app_spec=args.app, app_dir=args.app_dir, **options)
    except StartupFailed as exc:
        print(f"netcore: error: application startup failed: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        host = options.get("host", OPTIONS["host"][0])
        port = options.get("port", OPTIONS["port"][0])
        print(f"netcore: error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except (ValueError, NotImplementedError) as exc:
        print(f"netcore: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
