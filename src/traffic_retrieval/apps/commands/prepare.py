"""``traffic-retrieval prepare``: vocabulary, per-kind label splits, OpenCLIP CSVs, routed queries."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..arguments import add_data_argument


def run(a: argparse.Namespace) -> int:
    from ...training.prepare import prepare

    print(prepare(a.data, a.out, a.train_labels, a.vocab, a.strict))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="vocabulary, per-kind label splits and OpenCLIP CSVs from the challenge layout",
        description=(
            "Reads DATA/{train,val}/*_label.txt and DATA/test/test_text.txt (the challenge layout; a synthetic "
            "DATA/pretrain split too). Writes OUT/car_attribute.json (vocabulary), OUT/prepared/{train,val}.csv "
            "(OpenCLIP CSVs: tab-separated filepath, title), OUT/prepared/{split}_{vehicle,pedestrian}_label.txt, "
            "and the routed test queries OUT/prepared/test_{vehicle,pedestrian}_text.txt with "
            "OUT/prepared/test_kinds.txt."
        ),
    )
    add_data_argument(p)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: parent of --data)")
    p.add_argument("--train-labels", type=Path, default=None,
                   help="train label file to use instead of DATA/train/train_label.txt (e.g. the augmented one)")
    p.add_argument("--vocab", type=Path, default=None, help="use this car_attribute.json instead of extracting one")
    p.add_argument("--strict", action="store_true",
                   help="abort at the first image that does not open instead of leaving it out of the CSV")
    p.set_defaults(func=run)
