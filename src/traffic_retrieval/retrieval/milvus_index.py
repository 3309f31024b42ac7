"""milvus_index: a gallery's vectors in Milvus, behind the interface of ``index.VectorIndex``.

The same code serves Milvus Lite, embedded in this process with a local folder as its URI
(``INDEX_DIR/milvus-<id>.db``, the default), and a Milvus server or cluster given as
``--uri http://host:19530``: both are reached through pymilvus's ``MilvusClient``. The index folder
is the faiss one's (``index.py``): ``embeddings-<id>/`` (the float16 rows that re-ranking, fusion and
exact fallbacks read, the names and sizes, and each row's entry id, camera, time and file stamp),
and ``table.json`` last, which records ``"backend": "milvus"``, the URI and the collection, so that
``infer``, ``search`` and ``serve --index DIR`` open either kind of folder alike.

One collection a gallery: ``id`` (INT64, the row's entry id: kept by an update, never reused while
the row is there), ``vector`` (the row as stored, float16 rounded), ``kind`` (vehicle | pedestrian, by
the image's shape), ``camera`` (text, "" where unknown), ``time`` (int64 microseconds, ``NO_TIME``
where unknown). Unreadable images are not inserted. A query's filter (kind, cameras, time range;
``core/metadata.py``) becomes a Milvus filter expression, applied inside the search, so a filtered
query still gets its k best allowed images.

Index types. Milvus Lite 3.2 builds FLAT (brute force), IVF_FLAT, IVF_SQ8, HNSW, HNSW_SQ and
AUTOINDEX (HNSW where faiss is installed); checked by running it (docs/vector-engines.md). ``flat``
is FLAT, with the inner product (the rows are L2-normalised, so it is the cosine, and the scores are
exactly the faiss flat index's): exact, the reference, and the default. ``hnsw`` is HNSW (M 32,
efConstruction 80, as the faiss kind), its ``ef`` tuned like faiss's ``efSearch``; a filtered HNSW
search that reaches fewer than k allowed images is redone exactly from the rows, as faiss's is.
IVF_PQ, the faiss ``ivfpq`` kind's counterpart, is not built by Milvus Lite, so ``ivfpq`` is faiss only.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.fileio import InputError, UserError, atomic_write_text
from ..core.metadata import MAX_CAMERA, NO_TIME, Filter, Metadata
from .index import EF_LADDER, HNSW_EF_CONSTRUCTION, HNSW_M, TABLE, VectorIndex, read_rows, read_table, remove_stale
from .rank import topk_blocked
from .shards import Embeddings

INDEX_TYPES = {"flat": "FLAT", "hnsw": "HNSW"}
METRIC = "IP"
INSERT_ROWS = 1024  # rows an insert request carries
QUERY_BATCH = 256  # queries a search request carries
MAX_LIMIT = 16384  # Milvus's largest top-k


class _LiteUnimplemented(logging.Filter):
    """Milvus Lite's in-process gRPC server logs a traceback for each call it does not implement, such as
    the AllocTimestamp that pymilvus's create_index makes (and gets over): not the user's concern."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], NotImplementedError))


logging.getLogger("grpc._server").addFilter(_LiteUnimplemented())


def is_lite(uri: str) -> bool:
    """Whether ``uri`` names a Milvus Lite folder (a path) rather than a server."""
    return not str(uri).startswith(("http://", "https://", "tcp://", "unix:", "grpc://"))


def quote(text: str) -> str:
    """A string literal of Milvus's filter language."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def expression(kind: Optional[str], where: Optional[Filter]) -> str:
    """The Milvus filter expression of a query's kind and filter ("" for none)."""
    parts = [f"kind == {quote(kind)}"] if kind else []
    if where is not None and where.cameras is not None:
        parts.append(f"camera in [{', '.join(quote(c) for c in sorted(where.cameras))}]")
    if where is not None and (where.after is not None or where.before is not None):
        parts.append(f"time > {NO_TIME}")
        if where.after is not None:
            parts.append(f"time >= {int(where.after)}")
        if where.before is not None:
            parts.append(f"time < {int(where.before)}")
    return " and ".join(parts)


@dataclass
class MilvusIndex(VectorIndex):
    """An index whose vectors live in a Milvus collection; rows, names and metadata as VectorIndex's."""

    uri: str = ""  # as recorded: "milvus-<id>.db" (Lite, inside the index folder) or a server's URI
    collection: str = ""
    backend = "milvus"

    # ------------------------------------------------------------------ connection

    def address(self) -> str:
        """The URI to connect to: a Lite folder resolved inside the index folder."""
        if is_lite(self.uri) and not Path(self.uri).is_absolute():
            return str(Path(self.source or ".") / self.uri)
        return self.uri

    def client(self):
        cached = self.__dict__.get("_client")
        if cached is None:
            from pymilvus import MilvusClient

            try:
                cached = self.__dict__["_client"] = MilvusClient(uri=self.address())
            except Exception as e:  # pymilvus raises its own kinds; the user needs the address and why
                hint = (" (a Milvus Lite folder opens in one process at a time: is a serve running on it?)"
                        if is_lite(self.uri) else "")
                raise UserError(f"cannot open Milvus at {self.address()}: {e}{hint}") from None
        return cached

    # ------------------------------------------------------------------ building

    @classmethod
    def build(cls, store: Embeddings, kind: str = "flat", budget: Optional[int] = None,
              metadata: Optional[Metadata] = None, uri: Optional[str] = None,
              folder: Optional[Path] = None) -> "MilvusIndex":
        """A new collection of ``store``'s readable rows: in Milvus Lite inside ``folder`` (the index
        folder) unless ``uri`` names a server."""
        if kind not in INDEX_TYPES:
            raise UserError(f"--backend milvus builds {' or '.join(INDEX_TYPES)}, not {kind} (ivfpq is faiss's)")
        from pymilvus import DataType, MilvusClient

        tag = uuid.uuid4().hex[:12]
        if folder is not None:
            Path(folder).mkdir(parents=True, exist_ok=True)
        index = cls(store, kind, None, {}, Path(folder) if folder else None, budget, None, metadata, None,
                    uri or f"milvus-{tag}.db", f"gallery_{tag}")
        client = index.client()
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=store.rows.shape[1])
        schema.add_field("kind", DataType.VARCHAR, max_length=16)
        schema.add_field("camera", DataType.VARCHAR, max_length=MAX_CAMERA + 1)
        schema.add_field("time", DataType.INT64)
        params = client.prepare_index_params()
        build = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION} if kind == "hnsw" else {}
        params.add_index("vector", index_type=INDEX_TYPES[kind], metric_type=METRIC, params=build)
        client.create_collection(index.collection, schema=schema, index_params=params)
        index._upsert(np.flatnonzero(store.ok), insert=True)
        client.flush(index.collection)
        index.wait_for_index()  # before tuning: until then Milvus searches the rows by brute force
        if kind == "hnsw":
            index.set_depth(EF_LADDER[-1])
        return index

    def _entity_rows(self, rows: np.ndarray) -> list[dict]:
        ids = self.ids if self.ids is not None else np.arange(len(self), dtype=np.int64)
        meta = self.metadata if self.metadata is not None else Metadata.empty(len(self))
        vectors = np.asarray(self.store.rows[rows], np.float32) if len(rows) else np.zeros((0, self.dim), np.float32)
        kinds = self.store.kinds
        return [{"id": int(ids[r]), "vector": v.tolist(), "kind": str(kinds[r]), "camera": str(meta.camera[r]),
                 "time": int(meta.time[r])} for r, v in zip(rows.tolist(), vectors)]

    def _upsert(self, rows: np.ndarray, insert: bool = False) -> None:
        """Write ``rows`` (their vectors, kinds and metadata) into the collection, a request at a time."""
        client = self.client()
        for start in range(0, len(rows), INSERT_ROWS):
            data = self._entity_rows(rows[start:start + INSERT_ROWS])
            (client.insert if insert else client.upsert)(self.collection, data)

    def set_depth(self, value: int) -> None:
        """HNSW's ``ef``, the candidates a search keeps (flat has no depth)."""
        if self.kind == "hnsw":
            self.params["ef_search"] = int(value)

    def grown(self, store: Embeddings, source: np.ndarray, removed: np.ndarray,
              metadata: Optional[Metadata] = None) -> "MilvusIndex":
        """The collection updated in place for the gallery ``store`` (see ``VectorIndex.grown``): the new
        rows inserted under new entry ids, kept rows whose camera or time changed upserted, and the
        removed rows' entries deleted once the table that no longer names them is written (``save``)."""
        old_ids = self.ids if self.ids is not None else np.arange(len(self), dtype=np.int64)
        ids = np.where(source >= 0, old_ids[np.maximum(source, 0)], -1).astype(np.int64)
        fresh = np.flatnonzero(source < 0)
        ids[fresh] = int(old_ids.max(initial=-1)) + 1 + np.arange(len(fresh))
        grown = MilvusIndex(store, self.kind, None, dict(self.params), self.source, self.budget, ids, metadata, None,
                            self.uri, self.collection)
        grown.__dict__["_client"] = self.client()
        grown.__dict__["_delete"] = old_ids[removed]
        kept = np.flatnonzero(source >= 0)
        before = self.metadata if self.metadata is not None else Metadata.empty(len(self))
        after = metadata if metadata is not None else Metadata.empty(len(store.names))
        changed = kept[(before.camera[source[kept]] != after.camera[kept]) | (before.time[source[kept]] != after.time[kept])]
        grown._upsert(changed[store.ok[changed]])
        grown._upsert(fresh[store.ok[fresh]], insert=True)
        grown.client().flush(self.collection)
        grown.wait_for_index()
        return grown

    def wait_for_index(self, timeout: float = 600.0) -> bool:
        """Milvus builds a flushed segment's vector index in the background and searches the segment by
        brute force until it is there: wait for it (False when ``timeout`` seconds ran out). Milvus Lite
        says every index is finished at once, so for Lite every data file of the collection must have its
        index file beside it (Lite 3.2's folder layout); for a server, ``describe_index`` has no pending rows."""
        if self.kind == "flat":
            return True
        deadline = time.monotonic() + timeout
        while not self._index_built():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _index_built(self) -> bool:
        if is_lite(self.uri):
            root = Path(self.address()) / "collections" / self.collection / "partitions"
            data = {p.stem for p in root.glob("*/data/*.parquet")}
            built = {p.name.split(".")[0] for p in root.glob(f"*/indexes/*.vector.{INDEX_TYPES[self.kind].lower()}.idx")}
            return data <= built
        info = self.client().describe_index(self.collection, "vector") or {}
        return not int(info.get("pending_index_rows", 0) or 0)

    # ------------------------------------------------------------------ searching

    def search(self, query_emb: np.ndarray, k: int, valid: Optional[np.ndarray] = None, budget: Optional[int] = None,
               where=None) -> tuple[np.ndarray, np.ndarray]:
        """VectorIndex.search's contract. ``where`` (kind, Filter) becomes the filter expression; a
        ``valid`` mask that it does not describe (a caller's own) is sent as the list of allowed ids."""
        kind, chosen = where if where is not None else (None, None)
        expr = expression(kind, chosen)
        allowed = self.ok.copy()
        if kind:
            allowed &= self.store.kinds == kind
        if chosen is not None:
            allowed &= chosen.mask(self.metadata, len(self))
        if valid is not None and not np.array_equal(self.ok & np.asarray(valid, bool), allowed):
            allowed = self.ok & np.asarray(valid, bool)
            ids = self.ids if self.ids is not None else np.arange(len(self))
            expr = f"id in [{', '.join(str(int(i)) for i in ids[allowed])}]"
        k = min(k, int(allowed.sum()))
        q = np.ascontiguousarray(query_emb, dtype=np.float32)
        budget = budget or self.budget
        if k == 0 or not len(q):
            return topk_blocked(q, self.store.rows, k, valid=allowed, budget=budget)
        scores = np.full((len(q), k), -np.inf, np.float32)
        indices = np.full((len(q), k), -1, np.int64)
        params = {"metric_type": METRIC, "params": {"ef": max(k, self.params.get("ef_search", k))}
                  if self.kind == "hnsw" else {}}
        for start in range(0, len(q), QUERY_BATCH):
            block = q[start:start + QUERY_BATCH]
            limit = k
            while True:
                found = self.client().search(self.collection, data=block.tolist(), filter=expr, limit=limit,
                                             search_params=params, output_fields=["id"])
                rows = [self._rows_of(np.array([h["id"] for h in hits], np.int64)) for hits in found]
                # an entry the table does not name (written by an update in progress) is dropped: ask for more
                if all((r >= 0).sum() >= min(k, len(r)) for r in rows) or limit >= int(allowed.sum()) + 64:
                    break
                limit = min(2 * limit, int(allowed.sum()) + 64, MAX_LIMIT)
                if limit == MAX_LIMIT and found and len(found[0]) >= MAX_LIMIT:
                    break
            for i, (hits, r) in enumerate(zip(found, rows)):
                keep = np.flatnonzero(r >= 0)[:k]
                indices[start + i, :len(keep)] = r[keep]
                scores[start + i, :len(keep)] = [float(hits[j]["distance"]) for j in keep]
        short = np.flatnonzero((indices < 0).any(axis=1))
        if len(short):  # HNSW under a strict filter may reach fewer than k: exact for those queries
            scores[short], indices[short] = topk_blocked(q[short], self.store.rows, k, valid=allowed, budget=budget)
        return scores, indices

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | Path) -> Path:
        """The embeddings folder, then the table (the commit point), then what the table no longer names:
        the removed rows' entries of an update, an earlier index's Lite folder or server collection."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        previous = read_table(directory)[1] if (directory / TABLE).is_file() else None
        embeddings = self._place(directory, uuid.uuid4().hex[:12])
        self.client().flush(self.collection)
        atomic_write_text(directory / TABLE, json.dumps(self._table(embeddings, uri=self.uri, collection=self.collection),
                                                         indent=1))
        pending = self.__dict__.pop("_delete", None)
        if pending is not None and len(pending):
            self.client().delete(self.collection, ids=[int(i) for i in pending])
            self.client().flush(self.collection)
        if previous and previous.get("backend") == "milvus" and not is_lite(previous.get("uri", "")) and (
                previous.get("uri"), previous.get("collection")) != (self.uri, self.collection):
            retire(previous)
        remove_stale(directory, {embeddings, self.uri if is_lite(self.uri) else None})
        self.source = directory
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "MilvusIndex":
        directory = Path(directory)
        table_path, table = read_table(directory)
        if table.get("backend") != cls.backend:
            raise InputError(table_path, None, f"a {table.get('backend', 'faiss')} index, not a milvus one")
        store = Embeddings.open(directory / table["embeddings"])
        index = cls(store, table["kind"], None, table.get("params", {}), directory, None, *read_rows(store),
                    table["uri"], table["collection"])
        client = index.client()
        if not client.has_collection(index.collection):
            raise InputError(table_path, None, f"Milvus at {index.address()} has no collection {index.collection}: "
                                               f"rebuild it with traffic-retrieval index --backend milvus")
        client.load_collection(index.collection)
        return index


def retire(table: dict) -> None:
    """Drop the server collection an earlier index table named (best effort: it may be gone already)."""
    try:
        from pymilvus import MilvusClient

        client = MilvusClient(uri=table["uri"])
        if client.has_collection(table["collection"]):
            client.drop_collection(table["collection"])
    except Exception:  # noqa: BLE001 - an unreachable server keeps its old collection; nothing else depends on it
        pass
