"""prepare: challenge layout -> vocabulary, per-kind label splits, OpenCLIP CSVs, routed queries.

Outputs (under ``--out``, by default the parent of the data root, i.e. ``data/`` for the
challenge's ``data/datasets``)::

    car_attribute.json                     the vehicle vocabulary (challenge layout)
    prepared/{train,val}.csv               OpenCLIP CSVs: tab-separated filepath, title (absolute paths)
    prepared/{train,val}_{vehicle,pedestrian}_label.txt
    prepared/pretrain.csv (and its label splits)  when the data has a pretrain split (synthetic)
    prepared/test_{vehicle,pedestrian}_text.txt   routed queries, original order within each kind
    prepared/test_kinds.txt                the kind of each line of test_text.txt, to merge back

Every file is written atomically and re-running gives identical bytes.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from .captions import parse_vehicle_caption, vehicle_caption
from .encode import unreadable_summary
from .fileio import InputError, atomic_write_text
from .labels import Label, read_labels, read_queries, write_labels
from .routing import route
from .vocab import Vocabulary, extract_vocabulary


@dataclass(frozen=True)
class Layout:
    """Paths of the challenge layout under a data root."""

    root: Path

    def images(self, split: str) -> Path:
        return self.root / split / f"{split}_images"

    def labels(self, split: str) -> Path:
        return self.root / split / f"{split}_label.txt"

    @property
    def queries(self) -> Path:
        return self.root / "test" / "test_text.txt"

    @property
    def ground_truth(self) -> Path:
        return self.root / "test" / "test_ground_truth.txt"


def default_out(data: Path) -> Path:
    return Path(data).resolve().parent


def training_caption(label: Label, vocab: Vocabulary) -> str:
    """The caption to train on: the completed vehicle label in the original caption's style when
    augmentation has completed it, else the original caption."""
    if label.completed is None or label.kind != "vehicle":
        return label.caption
    parsed = parse_vehicle_caption(label.caption, vocab)
    completed = vocab.parse(label.completed)
    if completed is None:
        raise ValueError(f"completed field {label.completed!r} of {label.image} is not in the vocabulary")
    return vehicle_caption(completed, parsed[0] if parsed else "This is a")


def openclip_csv(labels: Sequence[Label], images: Path, vocab: Vocabulary) -> str:
    """The tab-separated CSV that open_clip_train reads (``--csv-img-key filepath --csv-caption-key title``)."""
    rows = []
    for label in labels:
        title = training_caption(label, vocab)
        if "\t" in title:
            raise ValueError(f"caption of {label.image} contains a tab")
        rows.append((str((images / label.image).resolve()), title))
    buf = io.StringIO()
    pd.DataFrame(rows, columns=["filepath", "title"]).to_csv(buf, sep="\t", index=False, lineterminator="\n")
    return buf.getvalue()


def _why_unreadable(path: Path) -> Optional[str]:
    """None when PIL opens and decodes the image, else why not."""
    try:
        with Image.open(path) as im:
            im.load()
        return None
    except Exception as e:
        return str(e) or type(e).__name__


def readable_labels(labels: Sequence[Label], images: Path, what: str = "images", strict: bool = False,
                    progress: bool = True) -> list[Label]:
    """The labels whose image opens and decodes. The others are reported on stderr and left out, so
    that training never meets them; ``strict`` raises InputError at the first instead."""
    paths = [images / l.image for l in labels]
    pool = ThreadPoolExecutor(min(8, os.cpu_count() or 1))  # decoding releases the GIL
    try:
        errors = []
        for path, error in zip(paths, tqdm(pool.map(_why_unreadable, paths), total=len(paths),
                                           desc=f"check {what}", disable=not progress)):
            if error is not None:
                if strict:
                    raise InputError(path, None, f"unreadable image: {error} (without --strict it is left out)")
                print(f"warning: unreadable image {path}: {error}", file=sys.stderr)
            errors.append(error)
    finally:
        pool.shutdown(cancel_futures=True)
    ok = np.array([e is None for e in errors], bool)
    summary = unreadable_summary(paths, ok, what)
    if summary:
        print(f"{summary} (left out of the CSV)", file=sys.stderr)
    return [l for l, good in zip(labels, ok) if good]


def prepare(
    data: Path,
    out: Optional[Path] = None,
    train_labels: Optional[Path] = None,
    vocab_path: Optional[Path] = None,
    strict: bool = False,
    progress: bool = True,
) -> Path:
    """Run the step; returns the folder of prepared files. ``train_labels`` replaces the train
    label file (e.g. the augmented one); ``vocab_path`` replaces vocabulary extraction. Images
    that do not open are left out of the CSVs (``strict``: InputError). Every input is read and
    checked before anything is written."""
    layout = Layout(Path(data))
    out = Path(out) if out else default_out(data)
    prepared = out / "prepared"
    files = {"train": Path(train_labels or layout.labels("train"))}
    for split in ("val", "pretrain"):
        if layout.labels(split).exists():
            files[split] = layout.labels(split)
    splits = {split: read_labels(path) for split, path in files.items()}
    queries = read_queries(layout.queries) if layout.queries.exists() else None
    if vocab_path:
        vocab = Vocabulary.load(vocab_path)
    else:
        vehicles = [l for l in splits["train"] if l.kind == "vehicle"]
        vocab = extract_vocabulary([l.attribute for l in vehicles], [l.completed for l in vehicles])
    csvs = {}
    for split, labels in splits.items():
        readable = readable_labels(labels, layout.images(split), f"{split} images", strict, progress)
        try:
            csvs[split] = openclip_csv(readable, layout.images(split), vocab)
        except ValueError as e:
            raise InputError(files[split], None, str(e)) from None
    if not vocab_path:
        vocab.save(out / "car_attribute.json")
    for split, labels in splits.items():
        atomic_write_text(prepared / f"{split}.csv", csvs[split])
        for kind in ("vehicle", "pedestrian"):
            write_labels(prepared / f"{split}_{kind}_label.txt", [l for l in labels if l.kind == kind])
    if queries is not None:
        kinds = route(queries, vocab)
        atomic_write_text(prepared / "test_kinds.txt", "".join(k + "\n" for k in kinds))
        for kind in ("vehicle", "pedestrian"):
            atomic_write_text(
                prepared / f"test_{kind}_text.txt", "".join(q + "\n" for q, k in zip(queries, kinds) if k == kind)
            )
    return prepared


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="vocabulary, per-kind label splits and OpenCLIP CSVs from the challenge layout",
        description=(
            "Reads DATA/{train,val}/*_label.txt and DATA/test/test_text.txt (the challenge layout; a synthetic "
            "DATA/pretrain split too). Writes OUT/car_attribute.json (vocabulary), OUT/prepared/{train,val}.csv "
            "(OpenCLIP CSVs: tab-separated "
            "filepath, title), OUT/prepared/{split}_{vehicle,pedestrian}_label.txt, and the routed test queries "
            "OUT/prepared/test_{vehicle,pedestrian}_text.txt with OUT/prepared/test_kinds.txt."
        ),
    )
    p.add_argument("--data", type=Path, default=Path("data/datasets"), help="data root (default: data/datasets)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: parent of --data)")
    p.add_argument("--train-labels", type=Path, default=None,
                   help="train label file to use instead of DATA/train/train_label.txt (e.g. the augmented one)")
    p.add_argument("--vocab", type=Path, default=None, help="use this car_attribute.json instead of extracting one")
    p.add_argument("--strict", action="store_true",
                   help="abort at the first image that does not open instead of leaving it out of the CSV")
    p.set_defaults(func=lambda a: print(prepare(a.data, a.out, a.train_labels, a.vocab, a.strict)))
