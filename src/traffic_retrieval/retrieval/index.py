"""index: a persisted faiss vector index over an encoded gallery, for galleries a dense
texts x images product no longer fits.

``traffic-retrieval index`` encodes the gallery (through the embedding cache) and writes
``OUT/table.json`` (image names, unreadable images, model, kind) and ``OUT/index-<id>.faiss``.
The index file is written first, the table last, each atomically; the table names its index file,
so a reader sees the old pair or the new one, never a mix. Row i of the index is image i of the
table, unreadable images included (as zero vectors) so that rows and names never drift apart;
searches exclude them.

Kinds: ``flat`` is exact inner product (brute force, BLAS); ``hnsw`` and ``ivf`` are approximate,
and the subcommand measures their recall@10 against exact when it builds them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import faiss
import numpy as np

from ..core.fileio import InputError, atomic_write_text
from .encode import EncodeSettings, encode_texts
from .models import LoadedModel
from .rank import topk_blocked
from .store import gallery_embeddings, weights_digest

KINDS = ("flat", "hnsw", "ivf")
TABLE = "table.json"
# recall@10 1.0 on the tiny model's embeddings, 0.998 on 20,000 random unit vectors, 0.925 on 100,000
# (docs/speed-and-scale.md: random vectors are an approximate index's worst case)
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 512


def ivf_lists(n: int) -> int:
    """Inverted lists for n vectors: about 4 sqrt(n), with at least 39 training points per list."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def _new_index(kind: str, dim: int, n: int, ef_search: Optional[int], nprobe: Optional[int]) -> faiss.Index:
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = ef_search or HNSW_EF_SEARCH
        return index
    if kind == "ivf":
        lists = ivf_lists(n)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = min(lists, nprobe or max(1, lists // 4))
        return index
    raise ValueError(f"index kind must be one of {', '.join(KINDS)}, not {kind!r}")


def _search_params(
    index: faiss.Index, kind: str, sel: Optional[faiss.IDSelector], exhaustive: bool = False,
) -> Optional[faiss.SearchParameters]:
    """Parameters restricting a search to ``sel`` (None: no restriction); ``exhaustive`` makes an IVF
    search visit every list, that is, exact."""
    if kind == "hnsw":
        return faiss.SearchParametersHNSW(sel=sel, efSearch=index.hnsw.efSearch) if sel else None
    if kind == "ivf":
        nprobe = index.nlist if exhaustive else index.nprobe
        return faiss.SearchParametersIVF(sel=sel, nprobe=nprobe) if sel or exhaustive else None
    return faiss.SearchParameters(sel=sel) if sel else None


MODEL_KEYS = ("model", "pretrained", "square_pad", "weights")


def model_meta(loaded: LoadedModel) -> dict:
    """What makes two encodings of one gallery comparable (weights: a random initialisation's digest)."""
    return dict(zip(MODEL_KEYS, (loaded.name, loaded.pretrained, loaded.square_pad, weights_digest(loaded))))


@dataclass
class VectorIndex:
    """A faiss index whose row i is gallery image ``names[i]``."""

    index: faiss.Index
    names: list[str]
    ok: np.ndarray  # readable images; the others are never returned
    kind: str
    meta: dict  # what built it (model, pretrained, square_pad, weights), checked by ``check``
    source: Optional[Path] = None  # the folder it was loaded from, for messages

    @classmethod
    def build(
        cls, embeddings: np.ndarray, names: Sequence[str], kind: str = "flat", ok: Optional[np.ndarray] = None,
        meta: Optional[dict] = None, ef_search: Optional[int] = None, nprobe: Optional[int] = None,
    ) -> "VectorIndex":
        """Index L2-normalised ``embeddings`` (n x d) of the images ``names``, in that order."""
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        if len(emb) != len(names):
            raise ValueError(f"{len(emb)} embeddings for {len(names)} names")
        ok = np.ones(len(emb), bool) if ok is None else np.asarray(ok, bool)
        index = _new_index(kind, emb.shape[1], len(emb), ef_search, nprobe)
        if kind == "ivf":
            index.train(emb[ok] if ok.any() else emb)
            index.make_direct_map()  # so that rows can be read back (``embeddings``)
        index.add(emb)
        return cls(index, list(names), ok, kind, dict(meta or {}))

    def __len__(self) -> int:
        return len(self.names)

    @property
    def dim(self) -> int:
        return self.index.d

    def embeddings(self) -> np.ndarray:
        """The indexed vectors, in gallery order (what re-ranking needs)."""
        return self.index.reconstruct_n(0, len(self)) if len(self) else np.zeros((0, self.dim), np.float32)

    def search(
        self, query_emb: np.ndarray, k: int, valid: Optional[np.ndarray] = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row indices (n_queries x min(k, allowed rows)), best first, over readable images
        (and, given ``valid``, only those rows): the contract of ``rank.topk_blocked``."""
        allowed = self.ok if valid is None else self.ok & np.asarray(valid, bool)
        k = min(k, int(allowed.sum()))
        q = np.ascontiguousarray(query_emb, dtype=np.float32)
        if k == 0 or not len(q):
            return np.zeros((len(q), k), np.float32), np.zeros((len(q), k), np.int64)
        excluded = np.flatnonzero(~allowed).astype(np.int64)
        batch = faiss.IDSelectorBatch(excluded) if len(excluded) else None  # referenced here while searching
        sel = faiss.IDSelectorNot(batch) if batch is not None else None
        scores, indices = self.index.search(q, k, params=_search_params(self.index, self.kind, sel))
        short = np.flatnonzero((indices < 0).any(axis=1))
        if len(short):  # an approximate search reached fewer than k allowed rows: redo those rows exactly
            exact, kind = (faiss.downcast_index(self.index.storage), "flat") if self.kind == "hnsw" else (
                self.index, self.kind)
            scores[short], indices[short] = exact.search(q[short], k, params=_search_params(exact, kind, sel, True))
        return scores, indices

    def save(self, directory: str | Path) -> Path:
        """Write the index file, then the table that names it (the commit point); stale index files go."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        index_file = f"index-{uuid.uuid4().hex[:12]}.faiss"
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{index_file}.", suffix=".tmp")
        os.close(fd)
        try:
            faiss.write_index(self.index, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, directory / index_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        table = {"index_file": index_file, "kind": self.kind, "dim": self.dim, "count": len(self),
                 **self.meta, "unreadable": np.flatnonzero(~self.ok).tolist(), "names": self.names}
        atomic_write_text(directory / TABLE, json.dumps(table, indent=0))
        for stale in directory.glob("index-*.faiss"):
            if stale.name != index_file:
                stale.unlink(missing_ok=True)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "VectorIndex":
        directory = Path(directory)
        table_path = directory / TABLE
        if not table_path.is_file():
            raise InputError(directory, None, f"no {TABLE}: not an index folder (build one with traffic-retrieval index)")
        try:
            table = json.loads(table_path.read_text(encoding="utf-8"))
            index = faiss.read_index(str(directory / table["index_file"]))
        except (ValueError, KeyError, RuntimeError) as e:
            raise InputError(table_path, None, f"unreadable index: {e}") from None
        names = table.pop("names")
        if index.ntotal != len(names) or index.d != table["dim"]:
            raise InputError(table_path, None, f"index holds {index.ntotal} vectors of dimension {index.d}, "
                                               f"the table {len(names)} names of dimension {table['dim']}")
        ok = np.ones(len(names), bool)
        ok[np.asarray(table.pop("unreadable"), np.int64)] = False
        meta = {k: v for k, v in table.items() if k not in ("index_file", "kind", "dim", "count")}
        return cls(index, names, ok, table["kind"], meta, directory)

    def check(self, loaded: LoadedModel, names: Sequence[str]) -> None:
        """InputError unless the index was built by this model from exactly these images."""
        source = self.source or "index"
        if "model" in self.meta and model_meta(loaded) != {k: self.meta.get(k) for k in MODEL_KEYS}:
            built = ", ".join(f"{k} {self.meta.get(k)}" for k in MODEL_KEYS[:3])
            used = ", ".join(f"{k} {v}" for k, v in list(model_meta(loaded).items())[:3])
            raise InputError(source, None, f"index built with {built} (weights {str(self.meta.get('weights'))[:12]}); "
                                           f"this run uses {used}: rebuild it")
        if list(names) != self.names:
            first = next((i for i, (a, b) in enumerate(zip(names, self.names)) if a != b), min(len(names), len(self)))
            raise InputError(source, None, f"index holds {len(self)} images, the gallery {len(names)}, differing "
                                           f"from position {first}: rebuild it with traffic-retrieval index")


def recall_at_k(index: VectorIndex, queries: np.ndarray, k: int = 10) -> float:
    """Mean share of the exact top-k (brute force over the same vectors) that ``index`` returns."""
    _, approx = index.search(queries, k)
    _, exact = topk_blocked(queries, index.embeddings(), k, valid=index.ok)
    return float(np.mean([len(set(a) & set(e)) / max(len(e), 1) for a, e in zip(approx, exact)]))


def build_index(
    loaded: LoadedModel, paths: Sequence[Path], out: Path, kind: str = "flat", encode: EncodeSettings = EncodeSettings(),
    ef_search: Optional[int] = None, nprobe: Optional[int] = None, queries: Sequence[str] = (),
) -> tuple[VectorIndex, str]:
    """Encode the gallery ``paths`` (through the store) and write its index to ``out``; returns the
    index and a line to print (with recall@10 against exact for an approximate kind, on ``queries``
    or, without them, on a sample of the gallery's own embeddings)."""
    emb, ok = gallery_embeddings(loaded, paths, encode)
    start = time.perf_counter()
    meta = {**model_meta(loaded), "gallery": str(Path(paths[0]).parent) if paths else None}
    index = VectorIndex.build(emb, [p.name for p in paths], kind, ok, meta, ef_search, nprobe)
    seconds = time.perf_counter() - start
    index.save(out)
    line = f"indexed {len(index)} images ({int((~ok).sum())} unreadable) as {kind} in {seconds:.2f} s -> {out}"
    if kind != "flat" and ok.any():
        if queries:
            sample = encode_texts(loaded, list(queries)[:1000])
        else:
            readable = emb[ok]
            sample = readable[np.random.default_rng(0).choice(len(readable), min(1000, len(readable)), replace=False)]
        line += f"; recall@10 against exact on {len(sample)} queries: {recall_at_k(index, sample):.4f}"
    return index, line


def load_index(directory: Optional[Path]) -> Optional[VectorIndex]:
    """``--index DIR`` of infer, search and serve: the index, or None when not given."""
    return VectorIndex.load(directory) if directory else None
