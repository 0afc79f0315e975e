"""The `danlab` command. Each subcommand is a module of this package with `register(sub)`,
which adds its parser and sets `func(args) -> int`. Numerics live in the API, not here."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import sys

from danlab.errors import DanlabError

DESCRIPTION = """danlab: a laboratory for data assimilation networks (DANs), learned analysis
operators x^a = x^f + a(x^f, H^T R^-1 (y - H x^f)) trained end to end through many assimilation
cycles of a chaotic model (Lorenz-96, Kuramoto-Sivashinsky, your own), compared with EnKF-N,
IEnKF-N, 3D-Var and other filters on the same test trajectories (Bocquet, Finn, Cheng & Farchi;
Bocquet et al. 2024). Start with `danlab quickstart`."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2
        self.exit(2, f"danlab: error: {message}\n")


def build_parser(argv=()) -> argparse.ArgumentParser:
    from danlab import __version__

    parser = _Parser(prog="danlab", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"danlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is None:
            continue
        if "argv" in inspect.signature(register).parameters:
            register(sub, argv=argv)
        else:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        try:
            args = build_parser(argv).parse_args(argv)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2, one line)
            return int(exc.code or 0)
        return int(args.func(args) or 0)
    except DanlabError as exc:
        print(f"danlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("danlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
