"""``traffic-retrieval synth``: the synthetic dataset, a preview sheet, or the drawing speed."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..arguments import DEFAULT_DATA


def run(args: argparse.Namespace) -> int:
    if args.benchmark:
        from ...synthetic.generate import benchmark

        rate = benchmark(args.benchmark, args.workers, args.seed)
        print(f"{rate:.0f} images/s ({args.benchmark} images, {args.workers} workers, drawing + JPEG encoding)")
        return 0
    if args.preview:
        from ...synthetic.preview import preview

        preview(args.preview, args.seed)
        print(f"wrote {args.preview}")
        return 0
    from ...synthetic.generate import generate

    generate(args.out, args.train, args.val, args.test, args.seed, args.pretrain, args.workers,
             vehicle_fraction=args.vehicle_fraction)
    print(f"wrote {args.out}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="generate the synthetic traffic dataset (challenge layout)",
        description=(
            "Writes a synthetic dataset in the challenge's layout under --out: "
            "{train,val}/<split>_images/*.jpg + <split>_label.txt (web style, partial vehicle labels), "
            "test/test_images/*.jpg + test_text.txt (one query a line) + test_ground_truth.txt "
            "(query$relevant.jpg$...; surveillance style), and with --pretrain N a pretrain/ split with "
            "complete vehicle labels (web style). Reads nothing. The same --seed gives identical bytes. "
            "With --preview PNG only a contact sheet of samples is written; with --benchmark N nothing "
            "is written and the drawing speed is printed."
        ),
    )
    p.add_argument("--out", type=Path, default=DEFAULT_DATA, help=f"dataset root (default: {DEFAULT_DATA})")
    p.add_argument("--train", type=int, default=4000, help="training images (default: 4000)")
    p.add_argument("--val", type=int, default=500, help="validation images (default: 500)")
    p.add_argument("--test", type=int, default=1000, help="test images = queries (default: 1000)")
    p.add_argument("--pretrain", type=int, default=4000, help="web-style images with complete labels (default: 4000; 0: none)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--vehicle-fraction", type=float, metavar="F",
                   help="share of vehicles in every split (default: the real ones, 0.339 train/val, 0.432 test)")
    p.add_argument("--workers", type=int, default=2, help="drawing processes (default: 2)")
    p.add_argument("--preview", type=Path, help="write only a contact sheet PNG of samples and captions")
    p.add_argument("--benchmark", type=int, metavar="N", help="only time drawing N images and print images/s")
    p.set_defaults(func=run)
