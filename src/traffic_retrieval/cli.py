"""The ``traffic-retrieval`` command: one subcommand per pipeline step.

Each step module defines ``add_parser(subparsers)``, which registers its subcommand with a
``--help`` that says what it reads and writes, and sets ``func`` to the function that runs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .fileio import InputError

# Pipeline order; each name is a module of this package.
STEPS = ("synth", "prepare", "augment", "train", "infer", "index", "rerank", "evaluate", "search", "serve", "ablation")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="traffic-retrieval",
        description="Text-to-image retrieval for traffic scenes (A3R reproduction).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for step in STEPS:
        importlib.import_module(f".{step}", __package__).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return int(args.func(args) or 0)
    except (InputError, FileNotFoundError) as e:  # the user's input: a message, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
