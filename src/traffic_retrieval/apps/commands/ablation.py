"""``traffic-retrieval ablation``: every A3R step switched on in turn, over several seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..ablation import LADDER, StudySettings, run as run_study

SIZES = ("train", "test", "pretrain", "pretrain_epochs", "finetune_epochs", "matcher_epochs")


def run(a: argparse.Namespace) -> int:
    run_study(a.seeds, a.work, a.docs, StudySettings(**{name: getattr(a, name) for name in SIZES}), a.first)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ablation",
        help="the A3R ablation ladder on the synthetic benchmark, several seeds",
        description=(
            "For each seed: draws a synthetic dataset under WORK/seedS, pretrains and fine-tunes the tiny model, "
            "augments the labels and ranks the test split at every ladder step. Writes DOCS/ablation.md, "
            "DOCS/ablation.png and DOCS/augmentation.md. Resumable: finished seeds and trainings are reused."
        ),
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 2, 3],
                   help="default 0 2 3: seed 1 is where the defaults were chosen (docs/shift/select-seed1.txt)")
    p.add_argument("--work", type=Path, default=Path("data/ablation"))
    p.add_argument("--first", default=None, choices=[s.name for s in LADDER], metavar="STEP",
                   help="start the ladder at this step (its reference), writing DOCS/ablation-from-STEP.md instead")
    p.add_argument("--docs", type=Path, default=Path("docs"))
    defaults = StudySettings()
    for name in SIZES:
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    p.set_defaults(func=run)
