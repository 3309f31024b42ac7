"""``traffic-retrieval train``: the upstream OpenCLIP training loop with the project's presets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...retrieval.configs import TINY_MODEL

OVERRIDES = (("epochs", int), ("batch-size", int), ("lr", float), ("warmup", int), ("wd", float),
             ("precision", str), ("workers", int), ("seed", int))


def run(args: argparse.Namespace) -> int:
    from ...retrieval.models import normalise_pretrained
    from ...training.train import TrainingError, default_settings, train

    settings = default_settings(args.model, normalise_pretrained(args.pretrained))
    for key, _ in OVERRIDES:
        key = key.replace("-", "_")
        if getattr(args, key) is not None:
            setattr(settings, key, getattr(args, key))
    settings.extra = list(args.extra)
    try:
        checkpoint = train(args.train_csv, args.model, args.pretrained, args.val_csv, args.logs, args.name,
                           settings, args.resume, args.square_pad, args.nproc)
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(checkpoint)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="fine-tune with the upstream OpenCLIP training loop on the CSVs from prepare",
        description=(
            "Reads the OpenCLIP CSVs written by prepare (tab-separated filepath, title). Writes "
            "LOGS/NAME/{out.log, params.txt, checkpoints/epoch_N.pt, tensorboard/} through open_clip_train, "
            "with square padding in the image transform. Defaults: the A3R settings for ViT-bigG-14 "
            "(lr 4e-7, batch 25, warmup 10000, wd 0.01, cosine, AMP on GPU); for the tiny model, settings "
            "that train it on CPU (lr 1e-3 from scratch, 3e-4 when fine-tuning a checkpoint). Unknown options "
            "are passed to open_clip_train."
        ),
    )
    p.add_argument("--train-csv", type=Path, default=Path("data/prepared/train.csv"))
    p.add_argument("--val-csv", type=Path, default=None)
    p.add_argument("--model", default=TINY_MODEL)
    p.add_argument("--pretrained", default=None,
                   help="OpenCLIP tag, local checkpoint, a run folder (its latest checkpoint), or none")
    p.add_argument("--logs", type=Path, default=Path("log"))
    p.add_argument("--name", required=True, help="run name: the folder LOGS/NAME")
    for opt, typ in OVERRIDES:
        p.add_argument(f"--{opt}", type=typ, default=None, help="default: the model's preset")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its latest checkpoint")
    p.add_argument("--no-square-pad", dest="square_pad", action="store_false")
    p.add_argument("--nproc", type=int, default=1, help="processes (torchrun, DDP; gloo on CPU)")
    p.set_defaults(func=run, accepts_extra=True)
