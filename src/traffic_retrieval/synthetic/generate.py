"""generate: draw a planned synthetic dataset into the challenge's exact layout.

Writes, under ``out``::

    train/train_images/*.jpg   train/train_label.txt      web style, partial vehicle labels
    val/val_images/*.jpg       val/val_label.txt          web style, partial vehicle labels
    {train,val,pretrain}/*_label_truth.txt    synthetic only: vehicle labels with their true completion
    test/test_images/*.jpg     test/test_text.txt         surveillance style, one query per image
                               test/test_ground_truth.txt organisers' format: query$relevant1.jpg$...
    pretrain/pretrain_images/  pretrain/pretrain_label.txt  (with --pretrain) complete labels; mostly web
                               style, 30% surveillance style with the seed's prompt phrase on vehicle captions

Every split is written to a temporary folder and renamed into place, and the same seed gives
identical bytes.
"""

from __future__ import annotations

import io
import multiprocessing
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from tqdm import tqdm

from ..core.attributes import Vehicle
from ..core.fileio import atomic_write_text
from ..core.labels import write_labels
from .pedestrians import render_pedestrian
from .plan import SPLITS, Item, ground_truth, plan
from .vehicles import render_vehicle


def render_item(item: Item) -> bytes:
    """The item's JPEG bytes (fixed quality, no metadata: identical bytes for identical items)."""
    rng = np.random.default_rng(list(item.entropy))
    draw = render_vehicle if isinstance(item.subject, Vehicle) else render_pedestrian
    buf = io.BytesIO()
    draw(item.subject, rng, item.style).save(buf, "JPEG", quality=90 if item.style == "web" else 80)
    return buf.getvalue()


def _rendered(items: Sequence[Item], pool, progress: bool, desc: str):
    it = pool.imap(render_item, items, chunksize=32) if pool else map(render_item, items)
    return tqdm(it, total=len(items), desc=desc, unit="img", disable=not progress)


def _write_split(out: Path, split: str, items: Sequence[Item], pool, progress: bool) -> None:
    tmp = out / f".{split}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    images = tmp / f"{split}_images"
    images.mkdir(parents=True)
    for item, data in zip(items, _rendered(items, pool, progress, split)):
        (images / item.name).write_bytes(data)
    if split == "test":
        atomic_write_text(tmp / "test_text.txt", "".join(it.caption + "\n" for it in items))
        atomic_write_text(tmp / "test_ground_truth.txt", "".join(line + "\n" for line in ground_truth(items)))
    else:
        write_labels(tmp / f"{split}_label.txt", [it.label for it in items])
        # Synthetic only: the true completion of every vehicle label, in the augmented 4-field form,
        # so that augmentation accuracy can be measured.
        write_labels(tmp / f"{split}_label_truth.txt",
                     [replace(it.label, completed=it.subject.to_text()) for it in items if isinstance(it.subject, Vehicle)])
    shutil.rmtree(out / split, ignore_errors=True)
    tmp.rename(out / split)


def _pool_for(workers: int, n: int):
    return multiprocessing.Pool(workers) if workers > 1 and n >= 200 else None


def generate(out: Path, train: int, val: int, test: int, seed: int = 0, pretrain: int = 0, workers: int = 2,
             progress: bool = True, vehicle_fraction: Optional[float] = None) -> None:
    """Write the dataset under ``out`` (see the module docstring). A split of size 0 is not written and
    an old one of that name is removed, so that ``out`` always holds one generation."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items = plan({"train": train, "val": val, "test": test, "pretrain": pretrain}, seed, vehicle_fraction=vehicle_fraction)
    for split in set(SPLITS) - set(items):
        shutil.rmtree(out / split, ignore_errors=True)
    pool = _pool_for(workers, sum(map(len, items.values())))
    try:
        for split, split_items in items.items():
            _write_split(out, split, split_items, pool, progress)
    finally:
        if pool:
            pool.close()
            pool.join()


def benchmark(n: int = 1000, workers: int = 2, seed: int = 0) -> float:
    """Images per second of drawing + JPEG encoding (nothing written), half web, half surveillance."""
    items = plan({"train": n // 2, "test": n - n // 2}, seed)
    items = items["train"] + items["test"]
    pool = _pool_for(workers, n)
    try:
        start = time.perf_counter()
        for _ in _rendered(items, pool, progress=False, desc="benchmark"):
            pass
        return n / (time.perf_counter() - start)
    finally:
        if pool:
            pool.close()
            pool.join()
