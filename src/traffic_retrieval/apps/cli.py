"""The ``traffic-retrieval`` command: one subcommand per pipeline step, one thin module each
(``apps/commands/<name>.py``), imported only when that subcommand runs, so that ``evaluate`` never
loads torch. Each module defines ``add_parser(subparsers)``, which registers its subcommand with a
``--help`` that says what it reads and writes and sets ``func`` to the function that runs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from ..core.fileio import UserError

# Pipeline order: name -> one line of help (the module's parser repeats it).
COMMANDS = {
    "synth": "generate the synthetic traffic dataset (challenge layout)",
    "prepare": "vocabulary, per-kind label splits and OpenCLIP CSVs from the challenge layout",
    "augment": "complete partial vehicle labels (colour, type) with zero-shot CLIP",
    "train": "fine-tune with the upstream OpenCLIP training loop on the CSVs from prepare",
    "attributes": "fit attribute heads over the image embeddings, for infer --attributes",
    "matcher": "train a cross-encoder over the frozen towers' tokens, for infer --matcher",
    "infer": "rank the gallery for every query and write a submission",
    "index": "encode the gallery into a persisted faiss index that infer, search and serve can use",
    "rerank": "adaption re-ranking of a top-N submission",
    "evaluate": "score a submission: mAP@10 (official and strict), Recall@1/5/10",
    "search": "rank the gallery for one typed query and print the top-k",
    "serve": "a local search page over the gallery",
    "ablation": "the A3R ablation ladder on the synthetic benchmark, several seeds",
}


class Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: the mistake and where the options are listed,
    instead of a usage block that buries it (its subcommand parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def user_error(e: Exception) -> str:
    """The one line a user sees for a mistake in their input (a file, a path, a value)."""
    if isinstance(e, OSError) and e.filename is not None:
        return f"error: {e.filename}: {e.strerror}"
    return f"error: {e}"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (the others are listed by name and help)."""
    parser = Parser(
        prog="traffic-retrieval",
        description="Text-to-image retrieval for traffic scenes (A3R reproduction).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        if name == command:
            importlib.import_module(f".commands.{name}", __package__).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return int(args.func(args) or 0)
    except (UserError, OSError) as e:  # the user's input, paths or machine: a message, not a traceback
        print(user_error(e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
