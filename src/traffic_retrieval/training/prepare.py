"""prepare: challenge layout -> vocabulary, per-kind label splits, OpenCLIP CSVs, routed queries.

Outputs (under ``--out``, by default the parent of the data root, i.e. ``data/`` for the
challenge's ``data/datasets``)::

    car_attribute.json                     the vehicle vocabulary (challenge layout)
    prepared/{train,val}.csv               OpenCLIP CSVs: tab-separated filepath, title (absolute paths), attribute
    prepared/{train,val}_{vehicle,pedestrian}_label.txt
    prepared/pretrain.csv (and its label splits)  when the data has a pretrain split (synthetic)
    prepared/test_{vehicle,pedestrian}_text.txt   routed queries, original order within each kind
    prepared/test_kinds.txt                the kind of each line of test_text.txt, to merge back

Every file is written atomically and re-running gives identical bytes.
"""

from __future__ import annotations

import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..core.captions import parse_vehicle_caption, vehicle_caption
from ..core.fileio import InputError, atomic_write_text, require_writable
from ..core.images import unreadable_summary, why_unreadable
from ..core.labels import Label, read_labels, read_queries, write_labels
from ..core.layout import Layout, default_out, image_folder
from ..core.routing import route
from ..core.vocab import Vocabulary, extract_vocabulary, packaged_vocabulary


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
    """The tab-separated CSV that open_clip_train reads (``--csv-img-key filepath --csv-caption-key title``),
    with the label's attribute field beside it, which the attribute loss reads (training/attribute_loss.py)."""
    rows = []
    for label in labels:
        title = training_caption(label, vocab)
        if "\t" in title + label.attribute:
            raise ValueError(f"caption or attribute of {label.image} contains a tab")
        rows.append((str((images / label.image).resolve()), title, label.attribute))
    buf = io.StringIO()
    frame = pd.DataFrame(rows, columns=["filepath", "title", "attribute"])
    frame.to_csv(buf, sep="\t", index=False, lineterminator="\n")
    return buf.getvalue()


def readable_labels(labels: Sequence[Label], images: Path, what: str = "images", strict: bool = False,
                    progress: bool = True) -> list[Label]:
    """The labels whose image opens and decodes. The others are reported on stderr and left out, so
    that training never meets them; ``strict`` raises InputError at the first instead."""
    paths = [images / l.image for l in labels]
    pool = ThreadPoolExecutor(min(8, os.cpu_count() or 1))  # decoding releases the GIL
    try:
        errors = []
        checked = tqdm(pool.map(why_unreadable, paths), total=len(paths), desc=f"check {what}", disable=not progress)
        for error, path in zip(checked, paths):  # the bar first, so that it is exhausted and ends at N/N
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
    out = require_writable(Path(out) if out else default_out(data), "the prepared files", folder=True)
    prepared = out / "prepared"
    files = {"train": Path(train_labels or layout.labels("train"))}
    for split in ("val", "pretrain"):
        if layout.labels(split).exists():
            files[split] = layout.labels(split)
    splits = {split: read_labels(path, allow_empty=False) for split, path in files.items()}
    for split in splits:
        image_folder(layout.images(split))
    queries = read_queries(layout.queries) if layout.queries.exists() else None
    if vocab_path:
        vocab = words = Vocabulary.load(vocab_path)
    else:
        vehicles = [l for l in splits["train"] if l.kind == "vehicle"]
        vocab = extract_vocabulary([l.attribute for l in vehicles], [l.completed for l in vehicles])
        words = vocab.merged(packaged_vocabulary())  # as find_vocabulary gives augment and infer
    csvs = {}
    for split, labels in splits.items():
        readable = readable_labels(labels, layout.images(split), f"{split} images", strict, progress)
        try:
            csvs[split] = openclip_csv(readable, layout.images(split), words)
        except ValueError as e:
            raise InputError(files[split], None, str(e)) from None
    if not vocab_path:
        vocab.save(out / "car_attribute.json")
    for split, labels in splits.items():
        atomic_write_text(prepared / f"{split}.csv", csvs[split])
        for kind in ("vehicle", "pedestrian"):
            write_labels(prepared / f"{split}_{kind}_label.txt", [l for l in labels if l.kind == kind])
    if queries is not None:
        kinds = route(queries, words)
        atomic_write_text(prepared / "test_kinds.txt", "".join(k + "\n" for k in kinds))
        for kind in ("vehicle", "pedestrian"):
            atomic_write_text(
                prepared / f"test_{kind}_text.txt", "".join(q + "\n" for q, k in zip(queries, kinds) if k == kind)
            )
    return prepared
