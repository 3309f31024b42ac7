"""``traffic-retrieval attributes``: fit the attribute heads that ``infer --attributes`` fuses with CLIP."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..arguments import add_data_argument, add_model_arguments, encode_settings, model_settings

HEADS_NAME = "attribute_heads.safetensors"


def default_out(pretrained: str) -> Path | None:
    """Beside a run's weights when ``--pretrained`` is a run folder: the heads belong to that model."""
    return Path(pretrained) / HEADS_NAME if Path(pretrained).is_dir() else None


def run(a: argparse.Namespace) -> int:
    from ...core.attribute_groups import label_targets
    from ...core.fileio import UserError, require_writable
    from ...core.labels import read_labels
    from ...core.layout import Layout, find_vocabulary
    from ...retrieval.fusion import HeadSettings
    from ...retrieval.models import load_model
    from ...retrieval.store import gallery_embeddings
    from ...training.heads import HeadData, fit_heads

    out = a.out or default_out(a.pretrained)
    if out is None:
        raise UserError("--out is needed: --pretrained is not a run folder to write the heads into")
    require_writable(out, "the attribute heads")
    vocab = find_vocabulary(a.data, a.vocab)
    loaded = load_model(model_settings(a))
    heads = fit_heads(loaded, a.data, vocab, encode_settings(a), HeadData(a.split, a.degraded_views, a.seed),
                      HeadSettings(hidden=a.hidden, seed=a.seed))
    heads.save(out)
    layout = Layout(a.data)
    if a.split != "val" and layout.labels("val").is_file():  # a check on labelled images the heads never saw
        import numpy as np

        labels = read_labels(layout.labels("val"), allow_empty=False)
        emb, ok = gallery_embeddings(loaded, [layout.images("val") / l.image for l in labels], encode_settings(a))
        targets = np.array([label_targets(l, vocab, heads.groups) for l in labels])
        accuracy = heads.accuracy(emb[ok], targets[ok])
        print("accuracy on the val split: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
    print(out)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "attributes",
        help="fit attribute heads over the image embeddings, for infer --attributes",
        description=(
            "Reads DATA/SPLIT/SPLIT_label.txt and its images. Encodes each image as it is and --degraded-views "
            "times through the camera degradation of training, parses every label into attribute groups (kind; "
            "a vehicle's colour, type and brand, the parts a partial label states; a pedestrian's gender, age, "
            "orientation, sleeves and yes/no attributes) and fits one softmax head per group over the "
            "embeddings. Writes OUT (default RUN/attribute_heads.safetensors when --pretrained is a run folder) "
            "and prints the heads' accuracy on the val split when there is one."
        ),
    )
    add_data_argument(p)
    p.add_argument("--split", choices=("train", "val"), default="train", help="the labelled split to fit on")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--vocab", type=Path, default=None, help="car_attribute.json (default: found next to DATA)")
    p.add_argument("--degraded-views", type=int, default=3, help="degraded copies of each image (default 3)")
    p.add_argument("--hidden", type=int, default=0, help="a shared hidden layer of this width (default 0: linear)")
    p.add_argument("--seed", type=int, default=0)
    add_model_arguments(p)
    p.set_defaults(func=run)
