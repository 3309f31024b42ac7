"""Gallery metadata: which camera took each image and when, from a sidecar CSV, and the filters on them.

The sidecar sits beside the gallery folder, ``GALLERY.metadata.csv`` (``test_images.metadata.csv`` for
``test/test_images``), or is named with ``--metadata FILE``::

    image,camera,timestamp
    000123.jpg,12,2024-05-01T08:30:00Z

One row an image at most; images without a row have no camera and no time, and any camera or time
filter leaves them out. A timestamp is ISO 8601; one without a zone is read as UTC. Times are kept
as whole microseconds since 1970 (int64), cameras as text. ``Filter`` is what ``search`` and ``serve``
ask (``--camera``, ``--after``, ``--before``; the image kind is filtered apart, by shape); the engines
apply it inside their search (a faiss selector of the allowed rows, a Milvus filter expression).
Pure: no torch, no engine.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .fileio import InputError, UserError, read_text_lines

COLUMNS = ("image", "camera", "timestamp")
NO_TIME = np.iinfo(np.int64).min  # an image without a row: before every time, and left out by any time filter
MAX_CAMERA = 255  # characters (a Milvus VARCHAR field holds it)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def sidecar_path(gallery: str | Path) -> Path:
    """Where a gallery folder's metadata CSV is looked for: ``GALLERY.metadata.csv`` beside it."""
    gallery = Path(gallery)
    return gallery.with_name(gallery.name + ".metadata.csv")


def parse_time(text: str) -> int:
    """Microseconds since 1970-01-01 UTC of an ISO 8601 timestamp (UTC when it names no zone);
    ValueError when it is not one."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - _EPOCH) // timedelta(microseconds=1)


def format_time(micros: int) -> Optional[str]:
    """The ISO 8601 UTC text of a time (None for NO_TIME)."""
    if micros == NO_TIME:
        return None
    return (_EPOCH + timedelta(microseconds=int(micros))).isoformat().replace("+00:00", "Z")


@dataclass
class Metadata:
    """Per image of a gallery, in its row order: the camera ("" where unknown) and the time (NO_TIME)."""

    camera: np.ndarray  # str, n
    time: np.ndarray  # int64 microseconds, n

    @classmethod
    def empty(cls, n: int) -> "Metadata":
        return cls(np.full(n, "", dtype=object), np.full(n, NO_TIME, np.int64))

    def __len__(self) -> int:
        return len(self.time)

    @property
    def known(self) -> int:
        """Images with a row."""
        return int((self.time != NO_TIME).sum())

    def take(self, rows: np.ndarray) -> "Metadata":
        return Metadata(self.camera[rows], self.time[rows])


def read_metadata(path: str | Path, names: Sequence[str]) -> Metadata:
    """The sidecar CSV ``path`` for the gallery ``names`` (in row order). InputError naming the file and
    line for a missing or wrong header, a row without three cells, an image the gallery does not hold, a
    duplicate row, an empty camera or a bad timestamp."""
    lines = read_text_lines(path, "a metadata CSV (image,camera,timestamp)")
    if not lines:
        raise InputError(path, None, f"empty; expected the header {','.join(COLUMNS)}")
    number, header = lines[0]
    cells = [c.strip().lower() for c in next(csv.reader([header]))]
    if cells != list(COLUMNS):
        raise InputError(path, number, f"header {header!r}; expected {','.join(COLUMNS)}")
    row_of = {name: i for i, name in enumerate(names)}
    meta, seen = Metadata.empty(len(names)), {}
    for number, text in lines[1:]:
        cells = [c.strip() for c in next(csv.reader([text]))]
        if len(cells) != 3:
            raise InputError(path, number, f"{len(cells)} cells; expected 3 ({','.join(COLUMNS)})")
        image, camera, stamp = cells
        if image not in row_of:
            raise InputError(path, number, f"unknown image {image!r}: not in the gallery")
        if image in seen:
            raise InputError(path, number, f"duplicate row for {image!r} (first on line {seen[image]})")
        if not camera or len(camera) > MAX_CAMERA:
            raise InputError(path, number, f"camera {camera!r}: expected 1 to {MAX_CAMERA} characters")
        try:
            micros = parse_time(stamp)
        except (ValueError, OverflowError):
            raise InputError(path, number, f"bad timestamp {stamp!r}: expected ISO 8601, e.g. "
                                           f"2024-05-01T08:30:00Z") from None
        seen[image] = number
        meta.camera[row_of[image]], meta.time[row_of[image]] = camera, micros
    return meta


@dataclass(frozen=True)
class Filter:
    """What a query keeps: images of these cameras (None: any), taken at or after ``after`` and before
    ``before`` (microseconds; None: unbounded). An image without metadata passes only an empty filter."""

    cameras: Optional[frozenset] = None
    after: Optional[int] = None
    before: Optional[int] = None

    @property
    def active(self) -> bool:
        return self.cameras is not None or self.after is not None or self.before is not None

    @classmethod
    def parse(cls, cameras: Optional[str] = None, after: Optional[str] = None,
              before: Optional[str] = None) -> "Filter":
        """From the command line's (or the API's) text: ``"12,13,14"``, two ISO 8601 timestamps;
        UserError naming the option for a bad one."""
        chosen = None
        if cameras is not None:
            chosen = frozenset(c.strip() for c in cameras.split(",") if c.strip())
            if not chosen:
                raise UserError(f"--camera {cameras!r}: expected camera names separated by commas, e.g. 12,13,14")
        times = []
        for option, text in (("--after", after), ("--before", before)):
            try:
                times.append(None if text is None else parse_time(text))
            except (ValueError, OverflowError):
                raise UserError(f"{option} {text!r}: bad timestamp, expected ISO 8601, e.g. 2024-05-01T08:30:00Z") \
                    from None
        return cls(chosen, *times)

    def mask(self, meta: Optional[Metadata], n: int) -> np.ndarray:
        """The images of a gallery of ``n`` (with ``meta``) that pass. UserError for an active filter over a
        gallery without metadata, which would keep nothing without saying why."""
        keep = np.ones(n, bool)
        if not self.active:
            return keep
        if meta is None or not meta.known:
            raise UserError("camera and time filters need the gallery's metadata: a GALLERY.metadata.csv beside the "
                            "image folder (image,camera,timestamp), or --metadata FILE when indexing")
        if self.cameras is not None:
            keep &= np.isin(meta.camera.astype(str), sorted(self.cameras))
        if self.after is not None or self.before is not None:
            keep &= meta.time != NO_TIME
        if self.after is not None:
            keep &= meta.time >= self.after
        if self.before is not None:
            keep &= meta.time < self.before
        return keep

    def both(self, other: "Filter") -> "Filter":
        """What passes this filter and ``other`` (serve's own filter and a request's)."""
        cameras = (self.cameras if other.cameras is None else other.cameras if self.cameras is None
                   else self.cameras & other.cameras)
        after = max((t for t in (self.after, other.after) if t is not None), default=None)
        before = min((t for t in (self.before, other.before) if t is not None), default=None)
        return Filter(cameras, after, before)

    def describe(self) -> str:
        parts = [f"camera {','.join(sorted(self.cameras))}"] if self.cameras is not None else []
        parts += [f"{word} {format_time(t)}" for word, t in (("from", self.after), ("before", self.before))
                  if t is not None]
        return ", ".join(parts) or "none"
