"""A gallery ready to search: image names, embeddings, readable mask, and optionally a kind per
image and a vector index over the same rows.

``Gallery.search`` is the one place a ranking is computed (exact, streamed within the memory
budget, or the index when there is one). The embeddings are the store's shards on disk (or an
array in memory without a cache), read a block or a few rows at a time. Images are found by name
in the gallery's own table, never by joining a user's text onto a folder: that table is the only
way ``serve`` reaches a file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..core.images import scan_images
from ..core.metadata import Filter, Metadata, read_metadata, sidecar_path
from .encode import EncodeSettings, require_readable
from .index import VectorIndex
from .models import LoadedModel
from .rank import row_blocks, topk_blocked
from .shards import Embeddings, Shards
from .store import embed_gallery, tta_embeddings

log = logging.getLogger(__name__)


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path``, symlinks resolved, lies in ``folder`` (so a link out of the gallery is refused)."""
    try:
        return path.resolve(strict=True).is_relative_to(folder.resolve(strict=True))
    except OSError:
        return False


@dataclass
class Gallery:
    """An encoded gallery: the backend every search runs on."""

    names: list[str]
    embeddings: "np.ndarray | Shards"  # n x d, L2-normalised: float32 rows in memory, or the store's on disk
    ok: np.ndarray  # readable images; the others are never returned
    kinds: Optional[np.ndarray] = None  # "vehicle" | "pedestrian" per image (by shape), for a kind filter
    index: Optional[VectorIndex] = None  # a faiss index over the same rows, searched instead when given
    folder: Optional[Path] = None
    budget: Optional[int] = None  # bytes an exact search may hold in blocks (None: rank.default_budget())
    bias: Optional[np.ndarray] = None  # a score added to each image's, from a query bank (balance.py)
    paths: Optional[list[Path]] = None  # the image files in row order, for what reads candidates again
    tokens: dict = field(default_factory=dict, repr=False)  # row -> the cross-encoder's image tokens, once read
    metadata: Optional[Metadata] = None  # each image's camera and time, for filters (core/metadata.py)
    _by_name: dict[str, int] = field(init=False, repr=False)
    _of_kind: dict = field(init=False, repr=False, default_factory=dict)
    _mean: Optional[np.ndarray] = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.embeddings) == len(self.ok)) or (
                self.kinds is not None and len(self.kinds) != len(self.names)) or (
                self.metadata is not None and len(self.metadata) != len(self.names)):
            raise ValueError("names, embeddings, ok, kinds and metadata need one entry per image")
        self._by_name = {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def search(self, query_emb: np.ndarray, k: int, kind: Optional[str] = None,
               where: Optional[Filter] = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and indices (n_queries x <=k), best first, over readable images of ``kind`` (None: all)
        that pass ``where`` (cameras, time; UserError when it is active and the gallery has no metadata).
        The filter is applied inside the search: the k best allowed images, not the allowed among the k best."""
        if kind is not None and self.kinds is None:
            raise ValueError("this gallery has no image kinds to filter by")
        valid = self.ok if kind is None else self.ok & self._kind_mask(kind)
        if where is not None and where.active:
            valid = valid & where.mask(self.metadata, len(self))
        if self.index is not None:
            return self.index.search(query_emb, k, valid, self.budget, where=(kind, where))
        return topk_blocked(query_emb, self.embeddings, k, valid=valid, budget=self.budget)

    def mean(self) -> np.ndarray:
        """The mean embedding of the readable images (attribute fusion centres the gallery on it),
        computed once, a block of rows at a time (a store on disk is read through once)."""
        if self._mean is None:
            total, ok = np.zeros(self.embeddings.shape[1], np.float64), np.asarray(self.ok, bool)
            for start, rows in row_blocks(self.embeddings, 65536):
                total += rows[ok[start:start + len(rows)]].sum(0, dtype=np.float64)
            self._mean = (total / max(int(ok.sum()), 1)).astype(np.float32)
        return self._mean

    def _kind_mask(self, kind: str) -> np.ndarray:
        """Images of ``kind``, compared once per kinds table (a comparison of millions of strings would
        cost a typed query more than its search)."""
        cached = self._of_kind.get(kind)
        if cached is None or cached[0] is not self.kinds:
            cached = self._of_kind[kind] = (self.kinds, self.kinds == kind)
        return cached[1]

    def path(self, name: str) -> Optional[Path]:
        """The file of a gallery image by exact name, or None when the name is not in the table or
        the file (through symlinks) is no longer inside the gallery folder."""
        if name not in self._by_name or self.folder is None:
            return None
        path = self.folder / self.names[self._by_name[name]]
        return path if inside(path, self.folder) else None


def encode_gallery(
    loaded: LoadedModel, paths: Sequence[Path], settings: EncodeSettings = EncodeSettings(), flip_tta: bool = False,
    index: Optional[VectorIndex] = None,
) -> Gallery:
    """The gallery of ``paths``: from ``index`` when given (it must hold exactly these images, encoded by
    this model, averaged with their flips exactly when ``flip_tta`` asks it), else encoded through the
    store; with flip TTA, averaged with the horizontal flips (read into memory: flip TTA is for
    galleries that fit it). Each image's kind comes from the size recorded when it was encoded."""
    if index is not None:
        index.check(loaded, [p.name for p in paths], flip_tta)
        stored: Embeddings = index.store
        if settings.strict:
            require_readable(paths, stored.ok)
        emb = stored.rows
    else:
        stored = tta_embeddings(loaded, paths, settings) if flip_tta else embed_gallery(loaded, paths, settings)
        emb = stored.rows
    if not stored.ok.all():
        log.warning("%d of %d gallery images are unreadable and will not be returned", (~stored.ok).sum(),
                    len(stored.ok))
    return Gallery([p.name for p in paths], emb, stored.ok, stored.kinds, index=index, budget=settings.memory_budget,
                   paths=list(paths), metadata=index.metadata if index is not None else None)


def open_folder(
    loaded: LoadedModel, folder: Path, settings: EncodeSettings = EncodeSettings(), index: Optional[VectorIndex] = None,
    flip_tta: bool = False, metadata_file: Optional[Path] = None,
) -> Gallery:
    """The gallery of an image folder for search and serve: files linked from outside it are left out
    (only the folder's symbolic links are resolved: its listing says which they are). Its metadata is
    the index's record where ``index`` is given, else ``metadata_file`` or the sidecar beside the folder
    (``GALLERY.metadata.csv``) when there is one."""
    folder = Path(folder)
    paths = scan_images(folder)[0]  # entries that are not regular files: the command lists them (gallery_images)
    with os.scandir(folder) as entries:
        links = {entry.name for entry in entries if entry.is_symlink()}
    outside = {p.name for p in paths if p.name in links and not inside(p, folder)}
    if outside:
        log.warning("%d gallery entries point outside %s and are left out, e.g. %s", len(outside), folder,
                    folder / sorted(outside)[0])
        paths = [p for p in paths if p.name not in outside]
    gallery = encode_gallery(loaded, paths, settings, flip_tta, index)
    gallery.folder = folder
    sidecar = metadata_file or sidecar_path(folder)
    if index is None and (metadata_file or sidecar.is_file()):
        gallery.metadata = read_metadata(sidecar, gallery.names)
    return gallery
