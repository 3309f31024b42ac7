"""``traffic-retrieval augment``: zero-shot completion of partial vehicle labels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..arguments import add_data_argument, add_model_arguments, encode_settings, model_settings


def run(a: argparse.Namespace) -> int:
    from ...core.labels import read_labels
    from ...core.layout import Layout, find_vocabulary
    from ...training.augment import augment_split, augmented_path, unreadable

    layout = Layout(a.data)
    out = a.out or augmented_path(a.data, a.split)
    vocab = find_vocabulary(a.data, a.vocab)
    done = augment_split(model_settings(a), a.data, a.split, out, vocab, encode_settings(a), a.complete_brand)
    summary = unreadable(read_labels(layout.labels(a.split)), done, layout.images(a.split), vocab)
    if summary:
        print(f"{summary} (their labels keep three fields)", file=sys.stderr)
    print(out)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "augment",
        help="complete partial vehicle labels (colour, type) with zero-shot CLIP",
        description=(
            "Reads DATA/SPLIT/SPLIT_label.txt and its images. Writes OUT (default "
            "DATA/SPLIT/SPLIT_label_augmented.txt): the same labels with a fourth field on vehicle lines, the "
            "completed attribute ('white Audi' -> 'white Audi SUV'). Resumable: partial work is kept beside OUT "
            "and a re-run continues it. prepare --train-labels OUT trains on the completed captions. A vehicle "
            "whose image cannot be read keeps its three fields (no completion) and is counted at the end."
        ),
    )
    add_data_argument(p)
    p.add_argument("--split", choices=("train", "val"), default="train")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--vocab", type=Path, default=None, help="car_attribute.json (default: found next to DATA)")
    p.add_argument("--complete-brand", action="store_true", help="also guess missing brands (the seed did not)")
    p.add_argument("--chunk", type=int, default=2048, help="labels per resumable chunk")
    add_model_arguments(p)
    p.set_defaults(func=run)
