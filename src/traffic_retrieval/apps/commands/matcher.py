"""``traffic-retrieval matcher``: train the cross-encoder that ``infer --matcher`` re-scores candidates with."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..arguments import add_data_argument, add_model_arguments, encode_settings, model_settings, positive

MATCHER_NAME = "matcher.safetensors"


def run(a: argparse.Namespace) -> int:
    from ...core.fileio import UserError, require_writable
    from ...core.layout import find_vocabulary
    from ...retrieval.cross_encoder import MatcherShape
    from ...retrieval.models import load_model
    from ...training.matching import MatcherTraining, train_matcher

    out = a.out or (Path(a.pretrained) / MATCHER_NAME if Path(a.pretrained).is_dir() else None)
    if out is None:
        raise UserError("--out is needed: --pretrained is not a run folder to write the cross-encoder into")
    require_writable(out, "the cross-encoder")
    vocab = find_vocabulary(a.data, a.vocab)
    loaded = load_model(model_settings(a))
    given = lambda **values: {k: v for k, v in values.items() if v is not None}  # noqa: E731 (else the defaults)
    shape = MatcherShape(**given(width=a.width, layers=a.layers, image_block=a.image_block))
    training = MatcherTraining(**given(epochs=a.epochs, negatives=a.negatives, degraded=a.degraded_views), split=a.split,
                               seed=a.seed, images=a.images)
    train_matcher(loaded, a.data, vocab, encode_settings(a), shape, training).save(out)
    print(out)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "matcher",
        help="train a cross-encoder over the frozen towers' tokens, for infer --matcher",
        description=(
            "Reads DATA/SPLIT/SPLIT_label.txt and its images. Computes the frozen image tower's spatial tokens of "
            "each image (as it is and --degraded-views times through the camera degradation) and the text tower's "
            "token states of each caption, mines hard negatives with the bi-encoder (the captions an image ranks "
            "highest that contradict its label, and the images a caption ranks highest that contradict it) and "
            "trains a small image-text matching model (retrieval/cross_encoder.py) on them. Writes OUT (default "
            "RUN/matcher.safetensors when --pretrained is a run folder)."
        ),
    )
    add_data_argument(p)
    p.add_argument("--split", choices=("train", "val"), default="train", help="the labelled split to train on")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--vocab", type=Path, default=None, help="car_attribute.json (default: found next to DATA)")
    p.add_argument("--images", type=positive, default=None,
                   help="train on a random subset of this many labelled images (default all; ViT-bigG-14's tokens "
                        "take 852 KB an image and view)")
    p.add_argument("--epochs", type=positive, default=None, help="(default: training/matching.py's MatcherTraining)")
    p.add_argument("--negatives", type=positive, default=None,
                   help="hard negative captions per image and images per caption (default: MatcherTraining's)")
    p.add_argument("--degraded-views", type=int, default=None,
                   help="degraded copies of each image besides the clean one (default: MatcherTraining's)")
    p.add_argument("--width", type=positive, default=None, help="the matcher's width (default: MatcherShape's)")
    p.add_argument("--layers", type=positive, default=None, help="cross-attention blocks (default: MatcherShape's)")
    p.add_argument("--image-block", type=positive, default=None,
                   help="which intermediate of the image tower, from the end (1: its last stage or block; default: "
                        "MatcherShape's)")
    p.add_argument("--seed", type=int, default=0)
    add_model_arguments(p)
    p.set_defaults(func=run)
