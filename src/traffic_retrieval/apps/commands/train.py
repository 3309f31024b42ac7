"""``traffic-retrieval train``: the upstream OpenCLIP training loop with the project's presets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...retrieval.configs import TINY_MODEL

OVERRIDES = (("epochs", int), ("batch-size", int), ("lr", float), ("warmup", int), ("wd", float),
             ("precision", str), ("workers", int), ("seed", int), ("degrade", float),
             ("attribute-loss", float))


def run(args: argparse.Namespace) -> int:
    from ...retrieval.weights import normalise_pretrained
    from ...training.train import TrainingError, TrainJob, default_settings, plan, train

    settings = default_settings(args.model, normalise_pretrained(args.pretrained))
    for key, _ in OVERRIDES:
        key = key.replace("-", "_")
        if getattr(args, key) is not None:
            setattr(settings, key, getattr(args, key))
    settings.grad_checkpointing = args.grad_checkpointing
    settings.levers = args.levers
    settings.extra = list(args.extra)
    job = TrainJob(args.train_csv, args.model, args.pretrained, args.val_csv, args.logs, args.name, args.square_pad,
                   args.nproc, args.device, args.resume)
    if args.dry_run:
        print(plan(job, settings, dry_run=True).describe())
        return 0
    try:
        print(train(job, settings))
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="fine-tune with the upstream OpenCLIP training loop on the CSVs from prepare",
        description=(
            "Reads the OpenCLIP CSVs written by prepare (tab-separated filepath, title, attribute). Writes "
            "LOGS/NAME/{out.log, params.txt, checkpoints/epoch_N.pt (the latest only), "
            "weights/epoch_N.safetensors (every epoch, weights only: what infer reads), tensorboard/} through "
            "open_clip_train, with square padding in the image transform, and LOGS/NAME/run.json, the parameters "
            "that shape the run (--resume with other ones stops, saying what differs). Defaults: the A3R settings for "
            "ViT-bigG-14 (lr 4e-7, batch 25 per GPU, warmup 10000 divided by --nproc, wd 0.01, cosine, bf16 AMP, "
            "gradient checkpointing when the memory estimate needs it); for the tiny model, settings that train "
            "it on CPU (lr 2e-3 from scratch, 3e-4 when fine-tuning a checkpoint). --dry-run prints the exact "
            "command and the memory estimate. --attribute-loss W adds W times the cross-entropy of attribute heads "
            "on both towers, with the targets of the CSV's attribute column (off by default: in fine-tuning it did not "
            "help on seed 1; the reproduce notebook's stage 1 trains with it at 4, docs/domain-shift.md). Unknown "
            "options are passed to open_clip_train."
        ),
    )
    p.add_argument("--train-csv", type=Path, default=Path("data/prepared/train.csv"))
    p.add_argument("--val-csv", type=Path, default=None)
    p.add_argument("--model", default=TINY_MODEL)
    p.add_argument("--pretrained", default=None,
                   help="OpenCLIP tag, local checkpoint, a run folder (its latest weights), or none")
    p.add_argument("--logs", type=Path, default=Path("log"))
    p.add_argument("--name", required=True, help="run name: the folder LOGS/NAME")
    for opt, typ in OVERRIDES:
        p.add_argument(f"--{opt}", type=typ, default=None, help="default: the model's preset")
    p.add_argument("--grad-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on when the memory estimate exceeds 80%% of the GPU's memory")
    p.add_argument("--levers", default="none",
                   help="GPU levers, comma-separated: compile (the upstream --torchcompile), fused-adamw (or all; "
                        "default none: none is measured yet, docs/gpu.md); one that cannot run is turned off, saying why")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its latest checkpoint (with the parameters it was started with)")
    p.add_argument("--no-square-pad", dest="square_pad", action="store_false")
    p.add_argument("--nproc", type=int, default=1, help="processes (torchrun, DDP; gloo on CPU)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present; "
                                                  "a large model without CUDA needs an explicit --device cpu)")
    p.add_argument("--dry-run", action="store_true", help="print the upstream command and the memory estimate; run nothing")
    p.set_defaults(func=run, accepts_extra=True)
