"""index: a persisted index over a gallery's embedding store, for galleries that an exact search
no longer answers fast enough.

``traffic-retrieval index`` encodes the gallery into the store (``store.py``) and writes an index
folder: ``OUT/embeddings-<id>/`` (the store's shards, image sizes and manifest: hard links to the
cache where the file system allows, copies elsewhere), ``OUT/index-<id>.faiss`` for an approximate
kind, and ``OUT/table.json`` last, which names both, each atomically: a reader sees the old set or
the new one, never a mix. The table holds the backend ("faiss"; ``milvus_index.py`` writes the same
folder with "milvus"), the kind, its parameters and the model identity; the embeddings folder the
names, each image's size (so its kind), the rows, and ``rows.npz``: each row's entry id in the engine,
camera and time (``core/metadata.py``) and file size and mtime (what an update keeps, ``grown``);
``search`` and ``serve`` start from it without opening an image. Row i is image i, unreadable images
included (zero rows) so that rows and names never drift apart; searches exclude them.

Kinds, each built from the shards a block at a time (never the whole gallery in memory):

- ``flat``: exact; no faiss file, a search streams the shards within the memory budget.
- ``ivfpq`` (the approximate default): inverted lists of product-quantised codes in memory (160
  bytes an image at dim 1280, against 2,560 for the float16 row); the best ``refine`` x k
  candidates by their codes are re-scored exactly from the shards.
- ``hnsw``: a graph over float16 copies of the rows in memory; fast, but as large as the gallery.

The approximate kinds' search depth is tuned when they are built: the least value of a ladder
whose recall@10 against exact reaches ``RECALL_TARGET`` on half of the sample queries (``nprobe``,
then ``refine``, for ivfpq; ``efSearch`` for hnsw), reported on the other half. ``nprobe`` also
stops where probing twice the lists gains less than ``PLATEAU``: there the codes, not the lists,
limit recall, and more lists only cost time (at 2M images the earlier tuning climbed to every list,
162 ms a query, for no recall).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import faiss
import numpy as np

from ..core.fileio import DiskFull, InputError, atomic_open, atomic_write_text, out_of_space
from ..core.metadata import Metadata
from .encode import EncodeSettings, encode_texts
from .models import LoadedModel
from .rank import default_budget, row_blocks, topk_blocked
from .shards import Embeddings, finish_store, write_shard, write_store
from .store import embed_gallery, file_stamps, model_identity, tta_embeddings

KINDS = ("flat", "ivfpq", "hnsw")
TABLE = "table.json"
ROWS = "rows.npz"  # in the index's embeddings folder: each row's entry id, camera, time and file stamp
FORMAT = 2  # of the table (1: names and a faiss copy of every vector in the index folder)
RECALL_TARGET = 0.95  # recall@10 against exact that the tuned search depth reaches on the tuning queries
TUNE_QUERIES = 2000  # sample queries: half tune the depth, half report its recall
HNSW_M, HNSW_EF_CONSTRUCTION = 32, 80
EF_LADDER = (16, 32, 64, 128, 256, 512, 1024, 2048)
REFINE_LADDER = (5, 10, 20, 40, 80, 160, 320, 640)  # ivfpq: candidates re-scored exactly, per result asked for
PLATEAU = 0.002  # ivfpq: a doubling of nprobe that gains less recall@10 than this ends its tuning
PQ_DIMS = 8  # ivfpq: dimensions per product-quantiser code byte (1280 -> 160 bytes; docs/speed-and-scale.md)


def ivf_lists(n: int) -> int:
    """Inverted lists for n vectors: about 2 sqrt(n) (2,828 for 2M), with at least 39 training points per
    list. Fewer, longer lists than faiss's usual 4-16 sqrt(n): training and assigning cost n x lists x d,
    which is most of a build on a few cores, while scanning PQ codes is cheap."""
    return max(1, min(int(2 * math.sqrt(n)), n // 39))


def pq_shape(dim: int, n: int) -> tuple[int, int]:
    """(sub-quantisers, bits each) of the product quantiser: ``PQ_DIMS`` dimensions a code byte (the
    largest divisor of ``dim`` at or below dim / PQ_DIMS), 8 bits, fewer where a small gallery cannot
    train 256 centroids (39 training points each)."""
    m = next(m for m in range(max(1, dim // PQ_DIMS), 0, -1) if dim % m == 0)
    return m, max(1, min(8, int(math.log2(max(n, 2) / 39)) if n >= 78 else 1))


def nprobe_ladder(nlist: int) -> list[int]:
    return sorted({min(nlist, 2 ** i) for i in range(int(math.log2(nlist)) + 2)})


def _new_faiss(kind: str, dim: int, n: int) -> faiss.Index:
    if kind == "ivfpq":
        m, bits = pq_shape(dim, n)
        return faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, ivf_lists(n), m, bits, faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        return index
    raise ValueError(f"index kind must be one of {', '.join(KINDS)}, not {kind!r}")


def _selector(allowed: np.ndarray) -> Optional[faiss.IDSelector]:
    """A faiss selector of the allowed rows (None: all): a bitmap, n / 8 bytes, cheap to make per query
    (a list of excluded ids is not, for a kind filter that excludes half the gallery)."""
    if allowed.all():
        return None
    bitmap = np.packbits(allowed, bitorder="little")
    selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))
    selector.referenced_objects = [bitmap]  # faiss's idiom: the bitmap lives as long as the selector
    return selector


@dataclass
class VectorIndex:
    """An index whose row i is gallery image ``store.names[i]``; the rows themselves are the store's."""

    store: Embeddings
    kind: str = "flat"
    index: Optional[faiss.Index] = None  # None for flat
    params: dict = field(default_factory=dict)  # search depth and what it was tuned to
    source: Optional[Path] = None  # the folder it was loaded from, for messages
    budget: Optional[int] = None  # bytes its exact searches may hold in blocks (None: rank.default_budget())
    ids: Optional[np.ndarray] = None  # each row's entry id in the engine (None: the row number itself)
    metadata: Optional[Metadata] = None  # each row's camera and time (core/metadata.py), where recorded
    stamps: Optional[np.ndarray] = None  # each row's file (size, mtime), where recorded: what an update keeps
    backend = "faiss"

    @classmethod
    def build(cls, store: Embeddings, kind: str = "flat", budget: Optional[int] = None,
              metadata: Optional[Metadata] = None) -> "VectorIndex":
        """Index ``store``'s rows, a block of ``budget`` bytes at a time; an approximate kind is trained on
        a sample of the readable rows. The search depth is left at the top of its ladder (exact for
        ivfpq) until ``tune`` or ``set_depth``. ``metadata``: each row's camera and time, for filters."""
        if kind == "flat":
            return cls(store, kind, budget=budget, metadata=metadata)
        rows, ok = store.rows, store.ok
        readable = np.flatnonzero(ok) if ok.any() else np.arange(len(rows))
        index = _new_faiss(kind, rows.shape[1], len(readable))
        if kind == "ivfpq":
            wanted = max(64 * index.nlist, 39 * 2 ** index.pq.nbits)
            sample = np.sort(np.random.default_rng(0).choice(readable, min(len(readable), wanted), replace=False))
            # a gallery of a few images repeats them: k-means needs as many points as centroids
            sample = np.resize(sample, max(len(sample), 2 ** index.pq.nbits, index.nlist))
            index.train(np.ascontiguousarray(rows[sample], dtype=np.float32))
        per_row = rows.shape[1] * 6
        for _, block in row_blocks(rows, max(1, (budget or default_budget()) // 4 // per_row)):
            index.add(block)
        built = cls(store, kind, index, budget=budget, metadata=metadata)
        built.set_depth(nprobe_ladder(index.nlist)[-1] if kind == "ivfpq" else EF_LADDER[-1])
        if kind == "ivfpq":
            built.params["refine"] = REFINE_LADDER[-1]
        return built

    def __len__(self) -> int:
        return len(self.store.names)

    @property
    def ok(self) -> np.ndarray:
        """Readable images; the others are never returned."""
        return self.store.ok

    @property
    def names(self) -> list[str]:
        return self.store.names

    @property
    def dim(self) -> int:
        return self.store.rows.shape[1]

    @property
    def depth_name(self) -> Optional[str]:
        return {"ivfpq": "nprobe", "hnsw": "ef_search"}.get(self.kind)

    def set_depth(self, value: int) -> None:
        """How far an approximate search looks: lists probed (ivfpq) or graph candidates (hnsw)."""
        if self.kind == "ivfpq":
            self.index.nprobe = value = min(int(value), self.index.nlist)
        elif self.kind == "hnsw":
            self.index.hnsw.efSearch = value = int(value)
        self.params[self.depth_name] = value

    def tune(self, queries: np.ndarray, k: int = 10, target: float = RECALL_TARGET,
             depth: Optional[int] = None) -> tuple[int, float]:
        """The least depth of the ladder whose recall@k against exact on half of ``queries`` reaches
        ``target`` (set on the index; ``depth`` instead when given), and its recall on the other half.
        For ivfpq the lists probed are tuned first, re-scoring the most candidates, then the candidates
        re-scored: how far the codes mislead is a property of the data, apart from where its neighbours lie."""
        half = max(1, len(queries) // 2)
        tuning = queries[:half]
        held_out = queries[half:] if len(queries) > 1 else tuning
        exact = topk_blocked(tuning, self.store.rows, k, valid=self.ok, budget=self.budget)[1]

        def least(ladder: Sequence[int], apply, plateau: float = 0.0) -> bool:
            """Whether a value of the ladder reached the target (else its end, or a plateau, is kept)."""
            previous = None
            for value in ladder:
                apply(value)
                found = recall(self.search(tuning, k)[1], exact)
                if found >= target:
                    return True
                if plateau and previous and found - previous[1] < plateau:
                    apply(previous[0])  # the step gained nothing: keep the smaller value
                    return False
                previous = (value, found)
            return False

        if depth:
            self.set_depth(depth)
            reached = recall(self.search(tuning, k)[1], exact) >= target
        elif self.kind == "ivfpq":
            self.params["refine"] = REFINE_LADDER[-1]
            reached = least(nprobe_ladder(self.index.nlist), self.set_depth, PLATEAU)
        else:
            reached = least(EF_LADDER, self.set_depth)
        if self.kind == "ivfpq":
            reached = least(REFINE_LADDER, lambda value: self.params.update(refine=value))
        self.params.update({"tuned_for_recall@10": target, "target_reached": reached,
                            "recall@10": recall_at_k(self, held_out, k),
                            "recall_queries": len(held_out)})
        return self.params[self.depth_name], self.params["recall@10"]

    def search(
        self, query_emb: np.ndarray, k: int, valid: Optional[np.ndarray] = None, budget: Optional[int] = None,
        where=None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row indices (n_queries x min(k, allowed rows)), best first, over readable images
        (and, given ``valid``, only those rows): the contract of ``rank.topk_blocked``. The filter is
        applied inside the search (a selector of the allowed entries), so a filtered query still gets its
        k best allowed rows; an approximate search that reaches fewer (a strict filter) is redone exactly
        for those queries. ``where`` (what the filter was made from) is for engines that filter by an
        expression (milvus_index.py); faiss reads ``valid``."""
        allowed = self.ok if valid is None else self.ok & np.asarray(valid, bool)
        k = min(k, int(allowed.sum()))
        q = np.ascontiguousarray(query_emb, dtype=np.float32)
        budget = budget or self.budget
        if self.kind == "flat" or k == 0 or not len(q):
            return topk_blocked(q, self.store.rows, k, valid=allowed, budget=budget)
        sel = _selector(self._entries(allowed))
        if self.kind == "ivfpq":
            params = faiss.SearchParametersIVF(sel=sel, nprobe=self.index.nprobe)
            _, candidates = self.index.search(q, k * self.params["refine"], params=params)
            scores, indices = self._rescore(q, self._rows_of(candidates), k, budget)
        else:
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=self.index.hnsw.efSearch) if sel else None
            scores, indices = self.index.search(q, k, params=params)
            indices = self._rows_of(indices)
        short = np.flatnonzero((indices < 0).any(axis=1))
        if len(short):
            scores[short], indices[short] = topk_blocked(q[short], self.store.rows, k, valid=allowed, budget=budget)
        return scores, indices

    def _entries(self, allowed_rows: np.ndarray) -> np.ndarray:
        """The allowed rows as a mask over entry ids (the engine's numbering of the rows)."""
        if self.ids is None:
            return allowed_rows
        mask = np.zeros(int(self.ids.max(initial=-1)) + 1, bool)
        mask[self.ids[allowed_rows]] = True
        return mask

    def _rows_of(self, entries: np.ndarray) -> np.ndarray:
        """Row numbers of entry ids (-1 stays -1, as does an id no row holds)."""
        if self.ids is None:
            return entries
        lookup = self.__dict__.get("_lookup")
        if lookup is None:  # made once: the last slot, which no id reaches, stays -1
            lookup = np.full(int(self.ids.max(initial=-1)) + 2, -1, np.int64)
            lookup[self.ids] = np.arange(len(self.ids))
            self.__dict__["_lookup"] = lookup
        return lookup[np.where((entries >= 0) & (entries < len(lookup) - 1), entries, -1)]

    def _rescore(self, q: np.ndarray, candidates: np.ndarray, k: int, budget: Optional[int]):
        """Exact scores of the approximate candidates (rows read from the shards), the best k of them."""
        scores = np.full((len(q), k), -np.inf, np.float32)
        indices = np.full((len(q), k), -1, np.int64)
        block = max(1, (budget or default_budget()) // 8 // max(1, candidates.shape[1] * self.dim * 6))
        for start in range(0, len(q), block):
            cand = candidates[start:start + block]
            rows = self.store.rows[np.maximum(cand, 0)]
            exact = np.einsum("nd,nkd->nk", q[start:start + block], rows)
            exact[cand < 0] = -np.inf
            order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
            top = np.take_along_axis(exact, order, axis=1)
            scores[start:start + len(cand), :order.shape[1]] = top
            indices[start:start + len(cand), :order.shape[1]] = np.where(np.isfinite(top),
                                                                         np.take_along_axis(cand, order, axis=1), -1)
        return scores, indices

    def save(self, directory: str | Path) -> Path:
        """Write the embeddings folder and the index file, then the table that names them (the commit
        point); the files of an earlier index go."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:12]
        embeddings = self._place(directory, tag)
        index_file = None
        if self.index is not None:
            index_file = f"index-{tag}.faiss"
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{index_file}.", suffix=".tmp")
            os.close(fd)
            try:
                faiss.write_index(self.index, tmp)
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, directory / index_file)
            except BaseException as e:
                Path(tmp).unlink(missing_ok=True)
                shutil.rmtree(directory / embeddings, ignore_errors=True)
                if out_of_space(e) or "No space left on device" in str(e):  # faiss says so in a RuntimeError
                    raise DiskFull(directory / index_file) from e
                raise
        atomic_write_text(directory / TABLE, json.dumps(self._table(embeddings, index_file=index_file), indent=1))
        remove_stale(directory, {index_file, embeddings})
        return directory

    def _place(self, directory: Path, tag: str) -> str:
        """The embeddings folder of a save (the store's files, and each row's entry id, metadata and file
        stamp): a store already written into ``directory`` (an update's merged rows) stays where it is."""
        folder = self.store.folder
        if folder is not None and folder.parent.resolve() == directory.resolve() and folder.name.startswith("embeddings-"):
            name = folder.name
        else:
            name = f"embeddings-{tag}"
            _place_store(self.store, directory / name)
        write_rows(directory / name, self)
        return name

    def _table(self, embeddings: str, **extra) -> dict:
        return {"format": FORMAT, "backend": self.backend, "kind": self.kind, **extra, "embeddings": embeddings,
                "dim": self.dim, "count": len(self), "params": self.params, **self.store.meta}

    @classmethod
    def load(cls, directory: str | Path) -> "VectorIndex":
        directory = Path(directory)
        table_path, table = read_table(directory)
        if table.get("backend", "faiss") != cls.backend:
            raise InputError(table_path, None, f"a {table.get('backend')} index, not a {cls.backend} one: open it "
                                               f"with engines.load_index")
        store = Embeddings.open(directory / table["embeddings"])
        index = None
        if table["index_file"]:
            try:
                index = faiss.read_index(str(directory / table["index_file"]))
            except RuntimeError as e:
                raise InputError(table_path, None, f"unreadable index: {e}") from None
        if (index is not None and index.ntotal != len(store.names)) or store.rows.shape[1] != table["dim"]:
            raise InputError(table_path, None, f"index holds {index.ntotal if index else len(store.names)} vectors "
                                               f"of dimension {store.rows.shape[1]}, the table {table['count']} of "
                                               f"dimension {table['dim']}: rebuild it")
        return cls(store, table["kind"], index, table.get("params", {}), directory, None, *read_rows(store))

    def grown(self, store: Embeddings, source: np.ndarray, removed: np.ndarray,
              metadata: Optional[Metadata] = None) -> "VectorIndex":
        """This index over ``store``, the rows of a grown (or shrunk) gallery: row i of ``store`` is this
        index's row ``source[i]`` where that is not -1, else new. flat needs nothing more; ivfpq keeps
        its trained lists, removes the ``removed`` rows' entries and adds the new rows' codes under new
        entry ids (the kept entries keep theirs); hnsw, whose graph cannot lose nodes, is built again
        from the rows (no image is encoded again). The search depth is kept."""
        if self.kind == "flat":
            return VectorIndex(store, "flat", params=dict(self.params), budget=self.budget, metadata=metadata)
        if self.kind == "hnsw":
            rebuilt = VectorIndex.build(store, "hnsw", self.budget, metadata)
            rebuilt.params = dict(self.params)
            rebuilt.set_depth(self.params.get("ef_search", EF_LADDER[-1]))
            return rebuilt
        index = faiss.clone_index(self.index)
        old_ids = self.ids if self.ids is not None else np.arange(len(self), dtype=np.int64)
        if len(removed):
            index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(old_ids[removed], np.int64)))
        ids = np.where(source >= 0, old_ids[np.maximum(source, 0)], -1).astype(np.int64)
        fresh = np.flatnonzero(source < 0)
        ids[fresh] = int(old_ids.max(initial=-1)) + 1 + np.arange(len(fresh))
        step = max(1, (self.budget or default_budget()) // 4 // (store.rows.shape[1] * 6))
        for start in range(0, len(fresh), step):
            rows = fresh[start:start + step]
            index.add_with_ids(np.ascontiguousarray(store.rows[rows], np.float32), ids[rows])
        grown = VectorIndex(store, "ivfpq", index, dict(self.params), budget=self.budget, ids=ids, metadata=metadata)
        grown.set_depth(self.params.get("nprobe", index.nlist))
        return grown

    def check(self, loaded: LoadedModel, names: Sequence[str], flip_tta: bool = False) -> None:
        """InputError unless the index was built by this model (its whole identity, ``model_identity``)
        from exactly these images, averaged with their flips exactly when ``flip_tta`` asks it."""
        source = self.source or "index"
        if (self.store.meta.get("flip") == "tta") != flip_tta:
            built = "with" if self.store.meta.get("flip") == "tta" else "without"
            raise InputError(source, None, f"index built {built} flip TTA, asked {'with' if flip_tta else 'without'} "
                                           f"it: rebuild it with traffic-retrieval index "
                                           f"--{'' if flip_tta else 'no-'}flip-tta, or pass --{'no-' if flip_tta else ''}flip-tta")
        built, used = self.store.meta.get("identity"), model_identity(loaded)
        if built != used:
            differs = [key for key in used if (built or {}).get(key) != used[key]]
            shown = ", ".join(f"{key} {str((built or {}).get(key))[:60]} (this run: {str(used[key])[:60]})"
                              for key in differs)
            raise InputError(source, None, f"index built with another model or weights ({shown}): rebuild it")
        if list(names) != self.names:
            first = next((i for i, (a, b) in enumerate(zip(names, self.names)) if a != b), min(len(names), len(self)))
            raise InputError(source, None, f"index holds {len(self)} images, the gallery {len(names)}, differing "
                                           f"from position {first}: rebuild it with traffic-retrieval index")


def read_table(directory: Path) -> tuple[Path, dict]:
    """(path, contents) of an index folder's table; InputError when it is not one of this version."""
    table_path = Path(directory) / TABLE
    if not table_path.is_file():
        raise InputError(directory, None, f"no {TABLE}: not an index folder (build one with traffic-retrieval index)")
    try:
        table = json.loads(table_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise InputError(table_path, None, f"unreadable index: {e}") from None
    if table.get("format") != FORMAT:
        raise InputError(table_path, None, "an index of an earlier version of traffic-retrieval: rebuild it "
                                           "with traffic-retrieval index")
    return table_path, table


def remove_stale(directory: Path, kept: set) -> None:
    """The files of earlier indexes in ``directory`` (those its table no longer names)."""
    for stale in [*directory.glob("index-*.faiss"), *directory.glob("embeddings-*"), *directory.glob("milvus-*.db")]:
        if stale.name not in kept:
            if stale.name.startswith("milvus-"):  # a Milvus Lite folder this process may still serve
                try:
                    from milvus_lite.server_manager import server_manager_instance

                    server_manager_instance.release_server(str(stale))
                except ImportError:
                    pass
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)


def write_rows(folder: Path, index: "VectorIndex") -> None:
    """``ROWS`` of an index's embeddings folder: each row's entry id, camera, time and file stamp."""
    n = len(index)
    meta = index.metadata if index.metadata is not None else Metadata.empty(n)
    ids = index.ids if index.ids is not None else np.arange(n, dtype=np.int64)
    stamps = index.stamps if index.stamps is not None else np.full((n, 2), -1, np.int64)
    with atomic_open(folder / ROWS, "wb") as f:
        np.savez(f, ids=np.asarray(ids, np.int64), camera=meta.camera.astype(str), time=meta.time,
                 stamps=np.asarray(stamps, np.int64))


def read_rows(store: Embeddings) -> tuple[Optional[np.ndarray], Optional[Metadata], Optional[np.ndarray]]:
    """(entry ids, metadata, file stamps) of an index's rows; None for what is not recorded (an index
    written before they were, or ids that are the row numbers themselves)."""
    path = store.folder / ROWS if store.folder else None
    if path is None or not path.is_file():
        return None, None, None
    with np.load(path, allow_pickle=False) as rows:
        ids, camera, time, stamps = rows["ids"], rows["camera"].astype(object), rows["time"], rows["stamps"]
    if not len(ids) == len(camera) == len(time) == len(stamps) == len(store.names):
        raise InputError(path, None, f"rows for {len(ids)} images, the index {len(store.names)}: rebuild it")
    meta = Metadata(camera, time)
    return (None if np.array_equal(ids, np.arange(len(ids))) else ids, meta if meta.known else None,
            None if (stamps < 0).all() else stamps)


def _place_store(store: Embeddings, target: Path) -> None:
    """The store's files in ``target``: hard links (no copy, no extra disk) where the file system
    allows, else copies; a store in memory is written there."""
    if store.folder is None:
        write_store(target, np.asarray(store.rows), store.names, store.sizes, store.meta)
        return
    target.mkdir(parents=True, exist_ok=True)
    for path in store.files():
        try:
            os.link(path, target / path.name)
        except OSError:  # another file system, or one without links
            shutil.copyfile(path, target / path.name)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each exact top-k row that ``found`` holds."""
    return float(np.mean([len(set(a) & set(e)) / max(len(e), 1) for a, e in zip(found, exact)])) if len(exact) else 1.0


def recall_at_k(index: VectorIndex, queries: np.ndarray, k: int = 10) -> float:
    """Recall@k of ``index`` against exact search over the same rows."""
    exact = topk_blocked(queries, index.store.rows, k, valid=index.ok, budget=index.budget)[1]
    return recall(index.search(queries, k)[1], exact)


def plan_update(old: VectorIndex, paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """What an update of ``old`` to the gallery ``paths`` keeps: (for each image the old row it keeps, or
    -1 for an image to encode; the old rows no longer in the gallery). An image is kept when its name is
    there and, where the old index recorded them, its size and mtime (a replaced file is encoded again)."""
    stamps = file_stamps(paths)
    old_row = {name: i for i, name in enumerate(old.names)}
    source = np.array([old_row.get(Path(p).name, -1) for p in paths], np.int64)
    if old.stamps is not None:
        known = np.flatnonzero(source >= 0)
        changed = known[(old.stamps[source[known]] != stamps[known]).any(axis=1)]
        source[changed] = -1
    return source, np.setdiff1d(np.arange(len(old)), source[source >= 0])


def merged_store(old: VectorIndex, loaded: LoadedModel, paths: Sequence[Path], out: Path, source: np.ndarray,
                 encode: EncodeSettings = EncodeSettings(), flip_tta: bool = False) -> Embeddings:
    """The rows of the gallery ``paths`` as it is now (``plan_update``'s ``source``): the kept ones read
    from ``old``, the others encoded (only they), written as a store into ``out/embeddings-<id>``."""
    fresh = np.flatnonzero(source < 0)
    delta = None
    if len(fresh):
        new_paths = [paths[i] for i in fresh]
        delta = tta_embeddings(loaded, new_paths, encode) if flip_tta else embed_gallery(loaded, new_paths, encode)
    at = np.full(len(paths), -1, np.int64)
    at[fresh] = np.arange(len(fresh))
    folder = Path(out) / f"embeddings-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    bounds = [(s, min(s + encode.chunk, len(paths))) for s in range(0, len(paths), max(1, encode.chunk))]
    try:
        for start, stop in bounds:
            rows = np.empty((stop - start, old.dim), np.float32)
            sizes = np.empty((stop - start, 2), np.int32)
            src, new = source[start:stop], at[start:stop]
            kept = np.flatnonzero(src >= 0)
            if len(kept):
                rows[kept] = old.store.rows[src[kept]]
                sizes[kept] = old.store.sizes[src[kept]]
            added = np.flatnonzero(src < 0)
            if len(added):
                rows[added] = delta.rows[new[added]]
                sizes[added] = delta.sizes[new[added]]
            write_shard(folder, start, rows, sizes)
        meta = {k: v for k, v in old.store.meta.items() if k != "key"}  # no longer a cache folder's content key
        store = finish_store(folder, bounds, [p.name for p in paths], meta)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return store


def build_index(
    loaded: LoadedModel, paths: Sequence[Path], out: Path, kind: str = "flat", encode: EncodeSettings = EncodeSettings(),
    depth: Optional[int] = None, queries: Sequence[str] = (), flip_tta: bool = False,
    metadata: Optional[Metadata] = None, make=None, store: Optional[Embeddings] = None,
) -> tuple[VectorIndex, str]:
    """Encode the gallery ``paths`` into the store and write its index to ``out``; returns the index and
    a line to print. An approximate kind's depth is ``depth`` when given, else tuned (``VectorIndex.tune``)
    on ``queries`` or, without them, on a sample of the gallery's own rows. With ``flip_tta`` the rows are
    averaged with the images' horizontal flips (as infer's --flip-tta ranks). ``metadata``: each image's
    camera and time, recorded for filters. ``make(store, kind, budget, metadata)`` builds the index (default
    ``VectorIndex.build``, faiss; engines.py passes Milvus's). ``store``: the gallery's rows already at
    hand (another index's, of the same model), encoded by nobody."""
    if store is None:
        store = tta_embeddings(loaded, paths, encode) if flip_tta else embed_gallery(loaded, paths, encode)
    store.meta["gallery"] = str(Path(paths[0]).parent) if paths else None
    start = time.perf_counter()
    index = (make or VectorIndex.build)(store, kind, encode.memory_budget, metadata)
    index.stamps = file_stamps(paths)
    seconds = time.perf_counter() - start
    line = (f"indexed {len(index)} images ({int((~index.ok).sum())} unreadable) as {kind} ({index.backend})"
            f"{' with flip TTA' * flip_tta}{f' with the metadata of {metadata.known} images' if metadata else ''} "
            f"in {seconds:.2f} s")
    if kind != "flat" and index.ok.any():
        if queries:
            sample = encode_texts(loaded, list(dict.fromkeys(queries))[:TUNE_QUERIES])
        else:
            readable = np.flatnonzero(index.ok)
            rows = np.sort(np.random.default_rng(0).choice(readable, min(TUNE_QUERIES, len(readable)), replace=False))
            sample = store.rows[rows]
        _, held_out = index.tune(sample, depth=depth)
        depths = ", ".join(f"{key} {index.params[key]}" for key in (index.depth_name, "refine") if key in index.params)
        how = "the least reaching" if index.params["target_reached"] else "the ladder's end, not reaching"
        line += (f"; {depths} ({how} recall@10 {RECALL_TARGET} on {max(1, len(sample) // 2)} queries"
                 f"{', ' + index.depth_name + ' as given' if depth else ''}); recall@10 against exact on "
                 f"{index.params['recall_queries']} other queries: {held_out:.4f}")
    index.save(out)
    return index, line + f" -> {out}"
