"""The `danlab` command. Each subcommand is a module of this package with `register(sub)`,
which adds its parser and sets `func(args) -> int`. Numerics live in the API, not here."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from danlab.errors import DanlabError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2
        self.exit(2, f"danlab: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="danlab", description=__doc__.split(".")[0])
    from danlab import __version__

    parser.add_argument("--version", action="version", version=f"danlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DanlabError as exc:
        print(f"danlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("danlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
