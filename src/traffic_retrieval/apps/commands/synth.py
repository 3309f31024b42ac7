"""``traffic-retrieval synth``: the synthetic dataset, a preview sheet, or the drawing speed."""

from __future__ import annotations

import argparse
from pathlib import Path


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
    from ...synthetic.generate import generate, synthetic_root

    out = args.out or synthetic_root(args.seed, args.train, args.val, args.test, args.pretrain, args.vehicle_fraction)
    generate(out, args.train, args.val, args.test, args.seed, args.pretrain, args.workers,
             vehicle_fraction=args.vehicle_fraction, force=args.force, metadata=args.metadata)
    print(f"wrote {out}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="generate the synthetic traffic dataset (challenge layout)",
        description=(
            "Writes a synthetic dataset in the challenge's layout under --out: "
            "{train,val}/<split>_images/*.jpg + <split>_label.txt (web style, partial vehicle labels), "
            "test/test_images/*.jpg + test_text.txt (one query a line) + test_ground_truth.txt "
            "(query$relevant.jpg$...; surveillance style), with --pretrain N a pretrain/ split with "
            "complete vehicle labels (web style), and synthetic.json, the marker of what synth wrote. "
            "The dataset is drawn beside --out and swapped in whole; an --out holding anything synth did not "
            "write is refused unless --force. Reads nothing. The same --seed gives identical bytes. "
            "With --preview PNG only a contact sheet of samples is written; with --benchmark N nothing "
            "is written and the drawing speed is printed."
        ),
    )
    p.add_argument("--out", type=Path, default=None,
                   help="dataset root (default: data/synthetic/seedS-trainN-valN-testN-pretrainN/datasets, named "
                        "by the options, apart from data/datasets where the challenge data goes)")
    p.add_argument("--force", action="store_true",
                   help="replace --out even when it holds data synth did not write (deleting that data)")
    p.add_argument("--train", type=int, default=4000, help="training images (default: 4000)")
    p.add_argument("--val", type=int, default=500, help="validation images (default: 500)")
    p.add_argument("--test", type=int, default=1000, help="test images = queries (default: 1000)")
    p.add_argument("--pretrain", type=int, default=4000, help="web-style images with complete labels (default: 4000; 0: none)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--vehicle-fraction", type=float, metavar="F",
                   help="share of vehicles in every split (default: the real ones, 0.339 train/val, 0.432 test)")
    p.add_argument("--workers", type=int, default=2, help="drawing processes (default: 2)")
    p.add_argument("--metadata", action="store_true",
                   help="also write test/test_images.metadata.csv: a camera (1-20) and a time within one day for "
                        "each test image, drawn from the seed, for search and serve's --camera, --after, --before")
    p.add_argument("--preview", type=Path, help="write only a contact sheet PNG of samples and captions")
    p.add_argument("--benchmark", type=int, metavar="N", help="only time drawing N images and print images/s")
    p.set_defaults(func=run)
