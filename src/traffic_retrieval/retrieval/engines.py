"""engines: the vector engines behind one index interface, and what ``traffic-retrieval index`` does.

faiss (``index.py``) is the default and the reference; Milvus (``milvus_index.py``: Milvus Lite in the
index folder, or a server by URI) is for a gallery that grows, is filtered by camera or time, or
leaves one machine. Both are a ``VectorIndex``: ``search`` (top-k, filters inside the search),
``len``, ``ok``, ``names``, ``check``, ``save`` and ``load``. An index folder's table records which
engine wrote it (``"backend"``; a table without one is faiss's), and ``load_index`` opens either.

``build_index`` builds an index folder, or updates the one already in OUT when it was built by the
same model and engine, of the same kind and flip setting: only the images it does not hold (new, or
replaced: another size or mtime) are encoded, the others' rows are copied from it, and the rows of
deleted images go (``update_index``). An index of another engine or kind by the same model lends its
rows to the one built in its place (only what it lacks is encoded).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..core.fileio import InputError
from ..core.metadata import Metadata, read_metadata, sidecar_path
from . import index as faiss_index
from .encode import EncodeSettings
from .index import TABLE, VectorIndex, merged_store, plan_update, read_table
from .models import LoadedModel
from .store import file_stamps, model_identity

BACKENDS = ("faiss", "milvus")


def load_index(directory: Optional[Path]) -> Optional[VectorIndex]:
    """``--index DIR`` of infer, search and serve, of either engine: the index, or None when not given."""
    if not directory:
        return None
    table_path, table = read_table(Path(directory))
    backend = table.get("backend", "faiss")
    if backend == "faiss":
        return VectorIndex.load(directory)
    if backend == "milvus":
        from .milvus_index import MilvusIndex

        return MilvusIndex.load(directory)
    raise InputError(table_path, None, f"an index of the unknown backend {backend!r} (this version reads "
                                       f"{' and '.join(BACKENDS)})")


def gallery_metadata(paths: Sequence[Path], metadata_file: Optional[Path] = None) -> Optional[Metadata]:
    """The cameras and times of the gallery ``paths``: from ``metadata_file``, else from the sidecar beside
    the gallery folder (``core.metadata.sidecar_path``) when there is one, else None."""
    if not paths:
        return None
    path = Path(metadata_file) if metadata_file else sidecar_path(Path(paths[0]).parent)
    if metadata_file is None and not path.is_file():
        return None
    return read_metadata(path, [Path(p).name for p in paths])


def _updatable(out: Path, loaded: LoadedModel, kind: str, backend: str, uri: Optional[str],
               flip_tta: bool) -> tuple[Optional[VectorIndex], list[str], str]:
    """(the index in ``out``, or None; what differs from what is asked; a line on it, or "")."""
    if not (Path(out) / TABLE).is_file():
        return None, [], ""
    try:
        old = load_index(out)
    except InputError as e:
        return None, [], f"the index that was there could not be read ({e.defect}): built anew"
    differs = [what for what, same in (
        ("engine", old.backend == backend), ("kind", old.kind == kind),
        ("model", old.store.meta.get("identity") == model_identity(loaded)),
        ("flip TTA", (old.store.meta.get("flip") == "tta") == flip_tta),
        ("Milvus URI", uri is None or getattr(old, "uri", None) == uri)) if not same]
    return old, differs, f"the index that was there differs in {', '.join(differs)}: built anew" if differs else ""


def update_index(old: VectorIndex, loaded: LoadedModel, paths: Sequence[Path], out: Path,
                 encode: EncodeSettings = EncodeSettings(), flip_tta: bool = False,
                 metadata: Optional[Metadata] = None, depth: Optional[int] = None) -> tuple[VectorIndex, str]:
    """``old`` (the index in ``out``) brought to the gallery ``paths``: the images it does not hold encoded
    (only they) and added, the deleted ones removed (``VectorIndex.grown``); the search depth kept
    unless ``depth`` is given. Returns the index and a line to print."""
    start = time.perf_counter()
    source, removed = plan_update(old, paths)
    fresh = int((source < 0).sum())
    unchanged = (not fresh and not len(removed) and np.array_equal(source, np.arange(len(old)))
                 and _same_metadata(old.metadata, metadata, len(old)) and depth is None)
    if unchanged:
        return old, f"the {old.kind} ({old.backend}) index of {len(old)} images in {out} is up to date"
    store = merged_store(old, loaded, paths, out, source, encode, flip_tta)
    store.meta["gallery"] = str(Path(paths[0]).parent) if paths else None
    index = old.grown(store, source, removed, metadata)
    index.stamps = file_stamps(paths)
    if depth:
        index.set_depth(depth)
    index.save(out)
    return index, (f"updated the {old.kind} ({old.backend}) index of {len(old)} images: {len(paths) - fresh} kept, "
                   f"{fresh} encoded (new or changed), {len(removed)} removed, now {len(index)} images, in "
                   f"{time.perf_counter() - start:.2f} s -> {out}")


def _same_metadata(a: Optional[Metadata], b: Optional[Metadata], n: int) -> bool:
    a, b = a or Metadata.empty(n), b or Metadata.empty(n)
    return np.array_equal(a.camera.astype(str), b.camera.astype(str)) and np.array_equal(a.time, b.time)


def build_index(
    loaded: LoadedModel, paths: Sequence[Path], out: Path, kind: str = "flat", encode: EncodeSettings = EncodeSettings(),
    depth: Optional[int] = None, queries: Sequence[str] = (), flip_tta: bool = False, backend: str = "faiss",
    uri: Optional[str] = None, metadata_file: Optional[Path] = None, rebuild: bool = False,
) -> tuple[VectorIndex, str]:
    """The index folder ``out`` of the gallery ``paths`` in ``backend`` (faiss, or Milvus: Lite inside
    ``out`` unless ``uri`` names a server), with the gallery's metadata (``gallery_metadata``): the index
    already there updated when it can be (``update_index``; ``rebuild``: never), else built
    (``index.build_index``). Returns the index and a line to print."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    metadata = gallery_metadata(paths, metadata_file)
    old, differs, why = (None, [], "") if rebuild else _updatable(out, loaded, kind, backend, uri, flip_tta)
    if old is not None and not differs:
        return update_index(old, loaded, paths, out, encode, flip_tta, metadata, depth)
    store = None
    if old is not None and not {"model", "flip TTA"} & set(differs):  # another engine or kind of the same rows
        source, _ = plan_update(old, paths)
        store = merged_store(old, loaded, paths, out, source, encode, flip_tta)
        store.meta["gallery"] = str(Path(paths[0]).parent) if paths else None
        why += f" from its rows ({int((source < 0).sum())} images encoded)"
    make = None
    if backend == "milvus":
        from .milvus_index import MilvusIndex

        def make(store, kind, budget, metadata):
            return MilvusIndex.build(store, kind, budget, metadata, uri, out)
    index, line = faiss_index.build_index(loaded, paths, out, kind, encode, depth, queries, flip_tta, metadata, make,
                                          store)
    return index, line + (f" ({why})" if why else "")
