"""faiss against Milvus Lite behind the same index interface: build time and the latency of single
queries, unfiltered and with a camera filter, through ``VectorIndex.search`` as search and serve call it.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/engines_latency.py 20000 2>/dev/null | tee docs/scale/engines_latency-20k.txt

N random unit rows of 128 dimensions (the tiny model's) in a float16 store, half of them wide
(vehicles); metadata: 100 cameras, one image a second. 200 single queries (random unit vectors) after
10 warm-up ones; the filter keeps 5 cameras (about 5% of the rows) and vehicles. For each engine and
kind: build seconds (Milvus: collection, inserts, flush, background index build), p50 and p95 ms of one
query's top 10, and the share of the exact top 10 it returns (recall@10), unfiltered and filtered.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from traffic_retrieval.core.metadata import Filter, Metadata, parse_time  # noqa: E402
from traffic_retrieval.retrieval.gallery import Gallery  # noqa: E402
from traffic_retrieval.retrieval.index import VectorIndex  # noqa: E402
from traffic_retrieval.retrieval.milvus_index import MilvusIndex  # noqa: E402
from traffic_retrieval.retrieval.rank import topk_blocked  # noqa: E402
from traffic_retrieval.retrieval.shards import write_store  # noqa: E402

D, QUERIES, WARM, K = 128, 200, 10, 10


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    faiss.omp_set_num_threads(1)
    print(f"{n} rows x {D} dims, {QUERIES} single queries (after {WARM}), top {K}; filter: 5 of 100 cameras and "
          f"vehicles; load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'engine':8} {'kind':5} {'build s':>8} {'p50 ms':>7} {'p95 ms':>7} {'recall':>7} "
          f"{'filtered p50':>12} {'p95':>7} {'recall':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        sizes = np.tile([[60, 40], [40, 60]], (n // 2 + 1, 1))[:n]
        store = write_store(Path(tmp) / "store", unit(n, 0), [f"{i:08d}.jpg" for i in range(n)], sizes, {})
        rng = np.random.default_rng(1)
        meta = Metadata(np.array([str(c) for c in rng.integers(0, 100, n)], dtype=object),
                        parse_time("2024-05-01T00:00:00Z") + np.arange(n, dtype=np.int64) * 10**6)
        where, kind = Filter.parse("3,17,42,64,99"), "vehicle"
        queries = unit(QUERIES + WARM, 2)
        allowed = store.ok & where.mask(meta, n) & (store.kinds == kind)
        exact = topk_blocked(queries, store.rows, K, valid=store.ok)[1]
        exact_filtered = topk_blocked(queries, store.rows, K, valid=allowed)[1]
        for engine, index_kind in (("faiss", "flat"), ("faiss", "hnsw"), ("milvus", "flat"), ("milvus", "hnsw")):
            start = time.perf_counter()
            if engine == "faiss":
                index = VectorIndex.build(store, index_kind, metadata=meta)
            else:
                index = MilvusIndex.build(store, index_kind, metadata=meta, folder=Path(tmp) / f"m-{index_kind}")
            if index_kind == "hnsw":
                index.set_depth(64)
            built = time.perf_counter() - start
            gallery = Gallery(store.names, store.rows, store.ok, store.kinds, index=index, metadata=meta)
            row = [f"{engine:8} {index_kind:5} {built:8.2f}"]
            for filtered, truth in ((False, exact), (True, exact_filtered)):
                times, found = [], []
                for i, q in enumerate(queries):
                    start = time.perf_counter()
                    _, top = gallery.search(q[None], K, kind if filtered else None, where if filtered else None)
                    if i >= WARM:
                        times.append(1000 * (time.perf_counter() - start))
                        found.append(len(set(top[0]) & set(truth[i])) / K)
                row.append(f"{np.percentile(times, 50):{12 if filtered else 7}.2f} {np.percentile(times, 95):7.2f} "
                           f"{np.mean(found):7.3f}")
            print(" ".join(row), flush=True)


if __name__ == "__main__":
    main()
