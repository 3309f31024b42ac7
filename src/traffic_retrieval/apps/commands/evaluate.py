"""``traffic-retrieval evaluate``: validate and score a submission (no model, no torch)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ...core.evaluation import evaluate, format_table
from ...core.fileio import atomic_write_text, require_writable
from ...core.vocab import Vocabulary


def run(args: argparse.Namespace) -> int:
    if args.out is not None:
        require_writable(args.out, "the metrics JSON")
    vocab = Vocabulary.load(args.vocab) if args.vocab else None
    metrics = evaluate(args.submission, args.ground_truth, args.gallery, vocab)
    line = json.dumps(metrics)
    if args.out is not None:
        atomic_write_text(args.out, line + "\n")
    print(format_table(metrics))
    print(line)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a submission: mAP@10 (official and strict), Recall@1/5/10",
        description=(
            "Reads a submission JSON and a ground truth (the organisers' 'query$img.jpg$...' file, "
            "or a label file 'image$attribute$caption'), checks the submission answers every query in "
            "order with 10 distinct names (in --gallery when given), prints a table and, as its last "
            "line, the metrics as one JSON object; --out writes that JSON too."
        ),
    )
    p.add_argument("--submission", required=True, type=Path, help="submission JSON to score")
    p.add_argument("--ground-truth", required=True, type=Path, help="ground-truth file (either format)")
    p.add_argument("--gallery", type=Path, default=None, help="gallery image folder: every name must be in it")
    p.add_argument("--vocab", type=Path, default=None,
                   help="car_attribute.json that routes organisers'-format queries to a kind (default: the challenge's)")
    p.add_argument("--out", type=Path, default=None, help="write the metrics JSON here (atomically)")
    p.set_defaults(func=run)
