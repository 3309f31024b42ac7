"""Can each attribute a query names be recovered from a surveillance-style crop at the model's input size?

A small convolutional network (timm ``resnet10t``, random initialisation) is trained with labels on
surveillance-style synthetic crops, square-padded and resized to the tiny model's 64 px exactly as
inference prepares them, with one softmax head per attribute group (core/attribute_groups.py); it is
then scored on crops of another seed. This is not a retrieval method (the pipeline never sees a
labelled surveillance image): it is the evidence that the synthetic benchmark is solvable, that the
brand's badge and every other cue survive the degradation at 64 px, and how hard each one is.

    .venv/bin/python benchmarks/recoverability.py --train 6000 --epochs 6 > docs/shift/recoverability.txt  # 4 min
    .venv/bin/python benchmarks/recoverability.py          # the default, 12,000 crops x 8 epochs: about 10 minutes
    .venv/bin/python benchmarks/recoverability.py --train-style web

``--train-style web`` trains on web-style crops through the training's camera degradation instead (what the
retrieval models see), and so measures how much of each cue survives the domain shift.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import time

import numpy as np
import open_clip
import timm
import torch
from PIL import Image

from traffic_retrieval.core.attribute_groups import MISSING, attribute_groups, encode_subject
from traffic_retrieval.core.vocab import packaged_vocabulary
from traffic_retrieval.retrieval.models import with_square_pad
from traffic_retrieval.synthetic.generate import render_item
from traffic_retrieval.synthetic.plan import plan
from traffic_retrieval.training.degrade import Degradation, Degrade


def crops(n: int, seed: int, split: str = "test") -> tuple[list[Image.Image], list]:
    """``n`` crops of a split's style (test: surveillance) and mix, and their participants."""
    items = plan({split: n}, seed)[split]
    with multiprocessing.Pool(2) as pool:
        data = pool.map(render_item, items, chunksize=64)
    return [Image.open(io.BytesIO(d)).convert("RGB") for d in data], [it.subject for it in items]


def tensors(images, transform) -> torch.Tensor:
    return torch.stack([transform(im) for im in images])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=int, default=12000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--size", type=int, default=64, help="input size (the tiny model's: 64)")
    ap.add_argument("--train-style", choices=("surveillance", "web"), default="surveillance",
                    help="web: train on web-style crops through training's camera degradation instead (the domain "
                         "shift the pipeline faces, with labels)")
    a = ap.parse_args()
    torch.manual_seed(0)
    groups = attribute_groups(packaged_vocabulary())
    transform = with_square_pad(open_clip.image_transform(a.size, is_train=False))
    start = time.perf_counter()
    train_split = "test" if a.train_style == "surveillance" else "train"  # web style; the subjects are complete
    (train_images, train_subjects), (test_images, test_subjects) = crops(a.train, 1001, train_split), crops(a.test, 1002)
    if a.train_style == "web":
        degrade = Degrade(Degradation(probability=0.7))
        train_images = [degrade(im) for im in train_images]
    x_train, x_test = tensors(train_images, transform), tensors(test_images, transform)
    y_train = torch.tensor([encode_subject(s, groups) for s in train_subjects])
    y_test = torch.tensor([encode_subject(s, groups) for s in test_subjects])
    sizes = [len(g.values) for g in groups]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    net = timm.create_model("resnet10t", pretrained=False, num_classes=int(offsets[-1]))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.05)
    steps = a.epochs * (len(x_train) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    net.train()
    for epoch in range(a.epochs):
        order = torch.randperm(len(x_train))
        for b in range(len(x_train) // 128):
            idx = order[b * 128:(b + 1) * 128]
            xb = x_train[idx]
            xb = torch.where(torch.rand(len(xb), 1, 1, 1) < 0.5, xb, xb.flip(3))  # horizontal flips
            out, yb = net(xb), y_train[idx]
            loss = sum(torch.nn.functional.cross_entropy(out[:, offsets[g]:offsets[g + 1]], yb[:, g], ignore_index=MISSING)
                       for g in range(len(groups)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        out = torch.cat([net(x_test[i:i + 256]) for i in range(0, len(x_test), 256)])
    rows = {}
    for g, group in enumerate(groups):
        stated = y_test[:, g] != MISSING
        predicted = out[stated, offsets[g]:offsets[g + 1]].argmax(1)
        majority = torch.bincount(y_test[stated, g], minlength=len(group.values)).max().item() / int(stated.sum())
        rows[group.name] = {"accuracy": float((predicted == y_test[stated, g]).float().mean()),
                            "majority": majority, "values": len(group.values), "n": int(stated.sum())}
    minutes = (time.perf_counter() - start) / 60
    style = "surveillance-style" if a.train_style == "surveillance" else "web-style (camera-degraded)"
    print(f"Recoverability at {a.size} px: resnet10t trained with labels on {a.train:,} {style} crops "
          f"(seed 1001), {a.epochs} epochs, scored on {a.test:,} surveillance-style crops of seed 1002 "
          f"({minutes:.1f} min).\n")
    print("| group | values | accuracy | majority class |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['values']} | {r['accuracy']:.3f} | {r['majority']:.3f} |")
    print("\n" + json.dumps(rows))


if __name__ == "__main__":
    main()
