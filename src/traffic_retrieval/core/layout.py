"""The challenge's folder layout, and what each split gives to rank.

::

    DATA/train/train_images/*.jpg   DATA/train/train_label.txt
    DATA/val/val_images/*.jpg       DATA/val/val_label.txt
    DATA/test/test_images/*.jpg     DATA/test/test_text.txt   (queries, one a line)

Prepared files (vocabulary, CSVs) go beside DATA, in its parent folder.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .fileio import InputError, require_folder
from .images import IMAGE_SUFFIXES, scan_images, skipped_summary
from .labels import read_labels, read_queries
from .vocab import Vocabulary, extract_vocabulary, packaged_vocabulary


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
    """Where prepare writes by default: the parent of the data root (``data/`` for ``data/datasets``)."""
    return Path(data).resolve().parent


def find_vocabulary(data: Path, vocab_path: Optional[Path] = None) -> Vocabulary:
    """The vocabulary that routes queries and completes labels: the given file as it is; else the
    data's own (prepare's output, or extracted from the train labels) with the packaged challenge
    vocabulary's missing words added, so that a small training set that never shows a type or
    brand still routes a query naming it as a vehicle."""
    if vocab_path:
        return Vocabulary.load(vocab_path)
    prepared = default_out(data) / "car_attribute.json"
    train = Layout(Path(data)).labels("train")
    if prepared.is_file():
        own = Vocabulary.load(prepared)
    elif train.is_file():
        vehicles = [l for l in read_labels(train) if l.kind == "vehicle"]
        own = extract_vocabulary([l.attribute for l in vehicles], [l.completed for l in vehicles])
    else:
        return packaged_vocabulary()
    return own.merged(packaged_vocabulary())


def image_folder(folder: Path) -> Path:
    """``folder`` when it is a folder of images; InputError otherwise."""
    return require_folder(folder, "a folder of images (.jpg, .png, ...)")


def gallery_images(folder: Path, strict: bool = False) -> list[Path]:
    """The image files of a gallery folder, the entries that are not regular files skipped and listed with
    what they are (``strict``: InputError naming the first); InputError when there are none to rank."""
    paths, skipped = scan_images(image_folder(folder))
    if skipped and strict:
        path, why = skipped[0]
        raise InputError(path, None, f"{why}, not an image file (without --strict it is skipped)")
    if skipped:
        print(f"warning: {skipped_summary(skipped)}", file=sys.stderr)
    if not paths:
        raise InputError(folder, None, f"holds no images ({' '.join(IMAGE_SUFFIXES)}); expected the gallery's images")
    return paths


def split_queries_and_gallery(data: Path, split: str, strict: bool = False) -> tuple[list[str], list[Path]]:
    """A split's queries and gallery images, in order: ``test`` ranks its images for the lines of
    ``test_text.txt`` (``gallery_images``, ``strict`` passed on); ``val`` ranks the val images for the val
    captions. InputError when either is missing or empty."""
    layout = Layout(Path(data))
    if split == "test":
        return read_queries(layout.queries), gallery_images(layout.images("test"), strict)
    labels = read_labels(layout.labels(split), allow_empty=False)
    return [l.caption for l in labels], [image_folder(layout.images(split)) / l.image for l in labels]
