"""Attribute augmentation: the seed-style loop vs the project's, same tiny model, same data, one run.

Seed style (what the A3R notebooks did): the CLIP model re-created for every batch of labels,
images opened and encoded one by one, each image's candidate prompts encoded for that image.
Project: model loaded once, images through a DataLoader in batches, each distinct prompt encoded
once (traffic_retrieval.training.augment). Both must choose the same completions.

    .venv/bin/python benchmarks/augment_speed.py [--train 600] [--batch 25] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from traffic_retrieval.training import augment as aug
from traffic_retrieval.core.captions import vehicle_caption
from traffic_retrieval.core.images import load_image
from traffic_retrieval.core.layout import Layout, find_vocabulary
from traffic_retrieval.retrieval.encode import EncodeSettings, encode_texts
from traffic_retrieval.core.labels import read_labels
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.synthetic.generate import generate


def seed_style(checkpoint: str, labels, image_dir: Path, vocab, batch: int) -> list[str]:
    completed = []
    todo = [(l, aug.needs_completion(l, vocab)) for l in labels]
    todo = [(l, need) for l, need in todo if need is not None]
    for start in range(0, len(todo), batch):
        loaded = load_model(ModelSettings("TR-ViT-Tiny", checkpoint))  # re-created for every batch, as the seed did
        for label, (style, vehicle) in todo[start:start + batch]:
            image = loaded.preprocess(load_image(image_dir / label.image)).unsqueeze(0)
            with torch.no_grad():
                feature = loaded.model.encode_image(image, normalize=True)[0].numpy()
            options = aug.candidates(vehicle, vocab)
            scores = encode_texts(loaded, [vehicle_caption(v, style) for v in options]) @ feature
            completed.append(options[int(np.argmax(scores))].to_text())
    return completed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=600, help="synthetic train images (about a third are vehicles)")
    parser.add_argument("--batch", type=int, default=25, help="seed-style batch size (one model load each)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path; the times are their medians")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "data", train=args.train, val=0, test=0, seed=0, progress=False)
        checkpoint = tmp / "tiny.pt"
        torch.save({"state_dict": load_model(ModelSettings("TR-ViT-Tiny", None)).model.state_dict()}, checkpoint)
        layout = Layout(tmp / "data")
        labels = read_labels(layout.labels("train"))
        vocab = find_vocabulary(tmp / "data")
        n = sum(aug.needs_completion(l, vocab) is not None for l in labels)

        seed_times, our_times = [], []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            seed_result = seed_style(str(checkpoint), labels, layout.images("train"), vocab, args.batch)
            seed_times.append(time.perf_counter() - start)

            start = time.perf_counter()
            loaded = load_model(ModelSettings("TR-ViT-Tiny", str(checkpoint)))
            ours = aug.augment(loaded, layout.labels("train"), layout.images("train"), tmp / f"aug-{repeat}.txt", vocab,
                               EncodeSettings(progress=False))
            our_times.append(time.perf_counter() - start)
    seed_seconds, our_seconds = float(np.median(seed_times)), float(np.median(our_times))
    ours = [l.completed for l in ours if aug.needs_completion(l, vocab) is not None]
    agree = np.mean([a == b for a, b in zip(seed_result, ours)])
    print(f"labels completed: {n} (of {len(labels)} train labels); medians of {args.repeats} runs: "
          f"seed style {', '.join(f'{t:.2f}' for t in seed_times)} s, project {', '.join(f'{t:.2f}' for t in our_times)} s")
    print(f"seed style : {seed_seconds:8.2f} s  {seed_seconds / n * 1000:8.1f} ms/label")
    print(f"project    : {our_seconds:8.2f} s  {our_seconds / n * 1000:8.1f} ms/label")
    print(f"speed-up   : {seed_seconds / our_seconds:8.1f}x   (same completions: {agree:.1%})")


if __name__ == "__main__":
    main()
