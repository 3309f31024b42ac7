"""Which vector index types the installed Milvus Lite builds, and what each answers, through pymilvus's
MilvusClient as ``retrieval/milvus_index.py`` uses it (inner product, a filter expression).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/milvus_index_types.py 2>/dev/null | tee docs/scale/milvus-lite-index-types.txt

For each type: whether ``create_collection`` with it succeeds and its background index build writes an
index file (Milvus Lite accepts any name and builds the index of a flushed segment in the background,
searching by brute force until then, or for good where that build fails); then, over N random unit vectors of D
dimensions (each with a camera 0-99) and 50 random unit queries, the recall@10 against exact (numpy),
unfiltered and with ``camera in [7]`` (about 1% of the rows), and how many of the 10 results a
filtered query gets on average. The choice it informed: flat is FLAT, hnsw is HNSW (milvus_index.py).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N, D, Q, K = 5000, 64, 50, 10
WAIT = 30  # seconds for a background index build
TYPES = ("FLAT", "BRUTE_FORCE", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "HNSW_SQ", "AUTOINDEX", "DISKANN", "SCANN")
PARAMS = {"IVF_FLAT": {"nlist": 64}, "IVF_SQ8": {"nlist": 64}, "IVF_PQ": {"nlist": 64, "m": 8, "nbits": 8},
          "HNSW": {"M": 32, "efConstruction": 80}, "HNSW_SQ": {"M": 32, "efConstruction": 80, "sq_type": "SQ8"}}
SEARCH = {"IVF_FLAT": {"nprobe": 16}, "IVF_SQ8": {"nprobe": 16}, "IVF_PQ": {"nprobe": 16}, "HNSW": {"ef": 64},
          "HNSW_SQ": {"ef": 64}, "AUTOINDEX": {"ef": 64}}


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    import milvus_lite
    import pymilvus
    from pymilvus import DataType, MilvusClient

    rows, queries = unit(N, 0), unit(Q, 1)
    camera = np.random.default_rng(2).integers(0, 100, N)
    scores = queries @ rows.T
    exact = np.argsort(-scores, axis=1)[:, :K]
    masked = np.where(camera == 7, scores, -np.inf)
    exact_filtered = [set(np.argsort(-row)[:min(K, int((camera == 7).sum()))]) for row in masked]
    print(f"pymilvus {pymilvus.__version__}, milvus-lite {milvus_lite.__version__}; {N} rows x {D} dims, {Q} queries, "
          f"top {K}, metric IP; filter camera in [7]: {int((camera == 7).sum())} rows")
    print(f"{'type':12} {'builds':8} {'recall@10':>9} {'filtered recall':>15} {'filtered hits':>13} {'build s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        client = MilvusClient(uri=str(Path(tmp) / "types.db"))
        for number, kind in enumerate(TYPES):
            name = f"t{number}"
            start = time.perf_counter()
            try:
                schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
                schema.add_field("id", DataType.INT64, is_primary=True)
                schema.add_field("vector", DataType.FLOAT_VECTOR, dim=D)
                schema.add_field("camera", DataType.INT64)
                params = client.prepare_index_params()
                params.add_index("vector", index_type=kind, metric_type="IP", params=PARAMS.get(kind, {}))
                client.create_collection(name, schema=schema, index_params=params)
                for s in range(0, N, 1000):
                    client.insert(name, [{"id": i, "vector": rows[i].tolist(), "camera": int(camera[i])}
                                         for i in range(s, min(N, s + 1000))])
                client.flush(name)
                # the index of a flushed segment is built in the background, brute force until then
                parts = Path(tmp) / "types.db" / "collections" / name / "partitions"
                while not list(parts.glob("*/indexes/*.idx")) and time.perf_counter() - start < WAIT:
                    time.sleep(0.05)
                built = time.perf_counter() - start
                if not list(parts.glob("*/indexes/*.idx")):
                    print(f"{kind:12} {'no':8} accepted, but no index file after {WAIT} s: the background build "
                          f"failed (Milvus Lite logs why, on stderr) and searches stay brute force")
                    continue
                search = {"metric_type": "IP", "params": SEARCH.get(kind, {})}
                found = client.search(name, data=queries.tolist(), limit=K, search_params=search, output_fields=[])
                recall = np.mean([len({h["id"] for h in hits} & set(e)) / K for hits, e in zip(found, exact)])
                found = client.search(name, data=queries.tolist(), limit=K, filter="camera in [7]",
                                      search_params=search, output_fields=[])
                filtered = np.mean([len({h["id"] for h in hits} & e) / max(len(e), 1)
                                    for hits, e in zip(found, exact_filtered)])
                hits = np.mean([len(h) for h in found])
                print(f"{kind:12} {'yes':8} {recall:9.3f} {filtered:15.3f} {hits:13.1f} {built:8.2f}")
            except Exception as e:  # noqa: BLE001 - the point is to see which types fail, and how
                print(f"{kind:12} {'no':8} {type(e).__name__}: {str(e).splitlines()[0][:110]}")
        client.close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
