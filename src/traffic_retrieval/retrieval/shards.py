"""Embeddings on disk: a gallery's rows as half-precision ``.npy`` shards, and the manifest that
ties them to image names and to the model that encoded them.

A store folder holds ``shard-START-STOP.npy`` (rows START..STOP-1, float16, n x d), one per
chunk, each followed by its ``.sizes.npy`` (width and height of each image, 0 x 0 for an unreadable
one), which marks the shard complete; once every shard is there, ``sizes.npy`` (every image, the
per-shard files merged) and ``manifest.json`` (names, shards, identity), written last: a folder
without a manifest is unfinished work that the next run continues. Each file is written atomically.

``Shards`` reads those rows back as one n x d float32 matrix without holding it: contiguous
blocks and gathered rows are read with ``pread`` into buffers of the caller's size, not mapped,
so that a search over ten million rows holds only its block (a memory map would count every page
it touched in the process's resident memory).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from ..core.fileio import InputError, atomic_open, atomic_write_text

DTYPE = np.dtype(np.float16)
MANIFEST = "manifest.json"
SIZES = "sizes.npy"
FORMAT = 1


def shard_name(start: int, stop: int) -> str:
    return f"shard-{start:010d}-{stop:010d}.npy"


def _sizes_name(start: int, stop: int) -> str:
    return shard_name(start, stop).replace(".npy", ".sizes.npy")


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, array)


def write_shard(folder: Path, start: int, rows: np.ndarray, sizes: np.ndarray) -> None:
    """Rows ``start..`` as float16, then their image sizes (the commit point of the shard)."""
    stop = start + len(rows)
    _save(folder / shard_name(start, stop), np.ascontiguousarray(rows, dtype=DTYPE))
    _save(folder / _sizes_name(start, stop), np.asarray(sizes, np.int32).reshape(len(rows), 2))


def shard_done(folder: Path, start: int, stop: int) -> bool:
    return (folder / _sizes_name(start, stop)).is_file()


def _data_offset(path: Path) -> tuple[int, tuple[int, ...]]:
    """Byte offset of the rows in an ``.npy`` file, and their shape."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = header(f)
        if fortran or dtype != DTYPE:
            raise InputError(path, None, f"not a shard of {DTYPE} rows")
        return f.tell(), shape


def finish_store(folder: Path, bounds: Sequence[tuple[int, int]], names: Sequence[str], meta: dict) -> "Embeddings":
    """Seal a folder whose shards ``bounds`` are all written: every image's size in one file, then the
    manifest; the per-shard size files, and shards of another chunking left by an earlier run, go."""
    folder = Path(folder)
    shards, sizes, dim = [], [], 0
    for start, stop in bounds:
        offset, shape = _data_offset(folder / shard_name(start, stop))
        dim = shape[1] if len(shape) == 2 else dim
        shards.append({"file": shard_name(start, stop), "rows": stop - start, "offset": offset})
        sizes.append(np.load(folder / _sizes_name(start, stop)))
    _save(folder / SIZES, np.concatenate(sizes) if sizes else np.zeros((0, 2), np.int32))
    manifest = {"format": FORMAT, **meta, "dim": dim, "dtype": DTYPE.name, "count": len(names), "shards": shards,
                "names": list(names)}
    atomic_write_text(folder / MANIFEST, json.dumps(manifest))
    kept = {s["file"] for s in shards}
    for done in folder.glob("shard-*.npy"):  # the shards' size files (merged above) and stale shards
        if done.name not in kept:
            done.unlink(missing_ok=True)
    return Embeddings.open(folder)


def write_store(folder: Path, rows: np.ndarray, names: Sequence[str], sizes: Optional[np.ndarray] = None,
                meta: Optional[dict] = None, chunk: int = 2048) -> "Embeddings":
    """A store folder from rows in memory (tests, benchmarks, an uncached gallery that is indexed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = np.ones((len(rows), 2), np.int32) if sizes is None else np.asarray(sizes, np.int32)
    bounds = [(s, min(s + chunk, len(rows))) for s in range(0, len(rows), chunk)]
    for start, stop in bounds:
        write_shard(folder, start, rows[start:stop], sizes[start:stop])
    return finish_store(folder, bounds, names, meta or {})


class Shards:
    """The rows of a store's shards as one read-only n x d float32 matrix, read on demand.

    Indexable as numpy is where the project needs it (an int, a slice, an array of row numbers of any
    shape, a boolean mask), iterable by row, and ``np.asarray``-able (the whole matrix: small
    galleries only)."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, folder: Path, shards: Sequence[dict], dim: int):
        self.folder, self.dim = Path(folder), dim
        self.files = [self.folder / s["file"] for s in shards]
        self.offsets = np.array([s["offset"] for s in shards], np.int64)
        self.starts = np.concatenate([[0], np.cumsum([s["rows"] for s in shards], dtype=np.int64)])
        self.row_bytes = dim * DTYPE.itemsize

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.dim

    @property
    def nbytes_on_disk(self) -> int:
        return len(self) * self.row_bytes

    def read(self, start: int, stop: int, out: Optional[np.ndarray] = None,
             buffer: Optional[np.ndarray] = None) -> np.ndarray:
        """Rows start..stop-1 as float32 (into ``out``, through the float16 ``buffer``, when given)."""
        n = max(0, min(stop, len(self)) - start)
        half = np.empty((n, self.dim), DTYPE) if buffer is None else buffer[:n]
        view = memoryview(half).cast("B")
        done = 0
        first = int(np.searchsorted(self.starts, start, "right")) - 1
        for s in range(max(first, 0), len(self.files)):
            if done == n:
                break
            local = start + done - int(self.starts[s])
            take = min(int(self.starts[s + 1]) - int(self.starts[s]) - local, n - done)
            fd = os.open(self.files[s], os.O_RDONLY)
            try:
                want = take * self.row_bytes
                got = os.preadv(fd, [view[done * self.row_bytes:done * self.row_bytes + want]],
                                int(self.offsets[s]) + local * self.row_bytes)
            finally:
                os.close(fd)
            if got != want:
                raise InputError(self.files[s], None, "shard shorter than its manifest says: rebuild it")
            done += take
        result = np.empty((n, self.dim), np.float32) if out is None else out[:n]
        result[...] = half
        return result

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(start, rows start..start+len-1) in blocks of ``rows``; the block's buffer is reused, so a
        block is valid until the next one is read."""
        rows = max(1, min(rows, len(self)))
        out, buffer = np.empty((rows, self.dim), np.float32), np.empty((rows, self.dim), DTYPE)
        for start in range(0, len(self), rows):
            yield start, self.read(start, start + rows, out, buffer)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows numbered ``rows`` (any shape), as float32 of shape rows.shape + (d,)."""
        rows = np.asarray(rows, np.int64)
        flat = rows.ravel()
        if len(flat) and (flat.min() < 0 or flat.max() >= len(self)):
            raise IndexError(f"row out of range for {len(self)} rows")
        half = np.empty((len(flat), self.dim), DTYPE)
        view = memoryview(half).cast("B")
        shard = np.searchsorted(self.starts, flat, "right") - 1
        order = np.argsort(shard, kind="stable")
        bounds = np.searchsorted(shard[order], np.arange(len(self.files) + 1))
        rb = self.row_bytes
        for s in np.flatnonzero(np.diff(bounds)):
            fd = os.open(self.files[s], os.O_RDONLY)
            try:
                base = int(self.offsets[s]) - int(self.starts[s]) * rb
                for i in order[bounds[s]:bounds[s + 1]].tolist():
                    os.preadv(fd, [view[i * rb:(i + 1) * rb]], base + int(flat[i]) * rb)
            finally:
                os.close(fd)
        return half.astype(np.float32).reshape(*rows.shape, self.dim)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            row = int(key) + len(self) if key < 0 else int(key)
            if not 0 <= row < len(self):
                raise IndexError(f"row {key} out of range for {len(self)} rows")
            return self.read(row, row + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            return self.read(start, stop) if step == 1 else self.take(np.arange(start, stop, step))
        key = np.asarray(key)
        return self.take(np.flatnonzero(key) if key.dtype == bool else key)

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, block in self.blocks(4096):
            yield from block.copy()

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self.read(0, len(self))
        return whole if dtype is None else whole.astype(dtype)

    @property
    def T(self) -> np.ndarray:  # noqa: N802 (numpy's name): the whole matrix, transposed
        return np.asarray(self).T


@dataclass
class Embeddings:
    """A gallery's encoded rows with what belongs to them: names, image sizes, and the identity of
    the model that made them. ``rows`` is a ``Shards`` for a finished store folder, or a float32
    array in memory for a gallery encoded without a cache (``folder`` None)."""

    names: list[str]
    rows: "Shards | np.ndarray"
    sizes: np.ndarray  # n x 2, width and height; 0 x 0 for an unreadable image
    meta: dict = field(default_factory=dict)  # identity of the encoding (model, weights, precision, ...)
    folder: Optional[Path] = None

    @cached_property
    def ok(self) -> np.ndarray:
        """Readable images: the others have no size and a zero row, and are never returned."""
        return self.sizes[:, 0] > 0

    @cached_property
    def kinds(self) -> np.ndarray:
        """"vehicle" for a wide (or square) image, "pedestrian" for a tall one (``core.images.image_kind``),
        from the sizes recorded when the images were encoded: no image is opened again."""
        return np.where(self.sizes[:, 0] >= self.sizes[:, 1], "vehicle", "pedestrian").astype(object)

    @classmethod
    def open(cls, folder: Path) -> "Embeddings":
        """A finished store folder; InputError when it is not one (no manifest, or a damaged one)."""
        folder = Path(folder)
        path = folder / MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            sizes = np.load(folder / SIZES)
            shards = manifest.pop("shards")
            names = manifest.pop("names")
            rows = Shards(folder, shards, manifest.pop("dim"))
        except FileNotFoundError as e:
            raise InputError(folder, None, f"no finished embeddings here ({Path(e.filename).name} missing)") from None
        except (ValueError, KeyError) as e:
            raise InputError(path, None, f"unreadable embeddings manifest: {e}") from None
        if manifest.get("format") != FORMAT or len(names) != len(rows) or len(sizes) != len(rows):
            raise InputError(path, None, f"embeddings manifest of another format or size ({len(names)} names, "
                                         f"{len(rows)} rows, {len(sizes)} sizes): rebuild it")
        for key in ("format", "dtype", "count"):
            manifest.pop(key, None)
        return cls(names, rows, sizes, manifest, folder)

    def files(self) -> list[Path]:
        """Every file of the finished store folder (what an index folder links to)."""
        return [*self.rows.files, self.folder / SIZES, self.folder / MANIFEST] if self.folder else []


def damaged_shards(folder: Path) -> tuple[Optional[list[tuple[int, int]]], list[str]]:
    """(the row bounds of every shard a sealed store folder's manifest lists, or None when the manifest
    itself cannot be read; why each damaged one no longer matches it). A shard is checked by its
    size on disk against the manifest's rows (a stat, no read): a truncated or grown file is found,
    not bytes changed in place."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        shards, dim = manifest["shards"], int(manifest["dim"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, [f"{folder / MANIFEST}: unreadable ({type(e).__name__})"]
    bounds, damaged, start = [], [], 0
    for shard in shards:
        path, stop = folder / shard["file"], start + int(shard["rows"])
        expected = int(shard["offset"]) + int(shard["rows"]) * dim * DTYPE.itemsize
        size = path.stat().st_size if path.is_file() else None
        if size != expected:
            damaged.append(f"{path.name}: {'missing' if size is None else f'{size} bytes'}, {expected} expected")
        bounds.append((start, stop))
        start = stop
    try:
        if len(np.load(folder / SIZES)) != start:
            damaged.append(f"{SIZES}: not {start} rows")
    except (OSError, ValueError) as e:
        damaged.append(f"{SIZES}: unreadable ({type(e).__name__})")
    return bounds, damaged


def unseal(folder: Path, bounds: Optional[Sequence[tuple[int, int]]], damaged: Sequence[str]) -> None:
    """Turn a sealed store folder back into unfinished work (``damaged_shards`` found ``damaged`` among its
    shards ``bounds``): each intact shard marked done again (its size file rewritten from the merged
    one), the damaged ones and the manifest removed, so that the next encoding writes only what was lost."""
    try:
        sizes = np.load(folder / SIZES)
    except (OSError, ValueError):
        sizes = None
    broken = {d.split(":")[0] for d in damaged}
    (folder / MANIFEST).unlink(missing_ok=True)
    for start, stop in bounds or ():
        name = shard_name(start, stop)
        if sizes is None or len(sizes) < stop or name in broken:
            (folder / name).unlink(missing_ok=True)
        else:
            _save(folder / _sizes_name(start, stop), sizes[start:stop])
    (folder / SIZES).unlink(missing_ok=True)
