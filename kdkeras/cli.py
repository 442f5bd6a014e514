"""The ``kdkeras`` command line: ``kdkeras run | init | export | eval | bench | inspect``.

Each sub-command is a small function that parses flags into plain arguments and calls the
Python API; no logic lives only here.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import kdkeras


def _add_run(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "run",
        help="run the whole pipeline from a TOML config (default: Fashion-MNIST)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  kdkeras run --quick --out runs/quick\n",
    )
    p.add_argument("config", nargs="?", default=None, help="TOML config (default: built-in)")
    p.add_argument("--out", default="kdkeras-run", help="output directory (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="small subset, few epochs (smoke test)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: config's)")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from kdkeras import pipeline

    return pipeline.run_from_cli(args)


# Sub-commands, in the order `kdkeras --help` lists them. Each adder registers one parser
# whose `func` takes the parsed namespace and returns an exit code.
_COMMANDS = [_add_run]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdkeras",
        description="Distill, compress and export Keras models to verified TFLite files.",
    )
    parser.add_argument("--version", action="version", version=f"kdkeras {kdkeras.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"kdkeras {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
