"""Vector index at scale: 1,000,000 random unit vectors at the tiny model's dimension (128),
10,000 queries, top-10, through ``traffic_retrieval.retrieval.index.VectorIndex``.

Exact (``flat``) over the whole set; the approximate kind over ``--approx-vectors`` of them
(HNSW construction is the costly part on 2 cores; pass 1000000 to build it over all), with its
recall@10 against exact on the same vectors. Each kind runs in its own process so that the peak
RSS (VmHWM) printed is that kind's alone. Random vectors are the hardest case for an approximate
index: real embeddings cluster, and recall is higher at the same parameters.

    .venv/bin/python benchmarks/faiss_scale.py [--vectors 1000000] [--queries 10000] [--approx-vectors 100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from traffic_retrieval.retrieval.index import VectorIndex, recall_at_k

DIM, K = 128, 10


def unit_vectors(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def high_water_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(kind: str, vectors: int, queries: int, recall_queries: int) -> dict:
    gallery, q = unit_vectors(vectors, seed=0), unit_vectors(queries, seed=1)
    names = [f"{i:07d}.jpg" for i in range(vectors)]
    r = {"kind": kind, "vectors": vectors, "queries": queries, "data_mib": (gallery.nbytes + q.nbytes) / 2**20}
    start = time.perf_counter()
    index = VectorIndex.build(gallery, names, kind)
    r["build_s"] = time.perf_counter() - start
    start = time.perf_counter()
    _, top = index.search(q, K)
    r["search_s"] = time.perf_counter() - start
    r["total_s"] = r["build_s"] + r["search_s"]
    assert top.shape == (queries, K) and (top >= 0).all()
    if kind != "flat":
        r["recall_at_10"] = recall_at_k(index, q[:recall_queries], K)
        r["recall_queries"] = min(recall_queries, queries)
    r["peak_rss_mib"] = high_water_mib()
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vectors", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--approx", choices=("hnsw", "ivf", "none"), default="hnsw")
    p.add_argument("--approx-vectors", type=int, default=100_000, help="vectors for the approximate kind")
    p.add_argument("--recall-queries", type=int, default=10_000, help="queries whose recall@10 is measured")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, vectors, queries = args.child[0], int(args.child[1]), int(args.child[2])
        print(json.dumps(child(kind, vectors, queries, args.recall_queries)))
        return

    runs = [("flat", args.vectors)] + ([(args.approx, args.approx_vectors)] if args.approx != "none" else [])
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads; dim {DIM}, {args.queries} queries, top-{K}")
    for kind, vectors in runs:
        done = subprocess.run([sys.executable, __file__, "--child", kind, str(vectors), str(args.queries),
                               "--recall-queries", str(args.recall_queries)], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{kind} failed:\n{done.stderr}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        line = (f"{kind:<5} {vectors:>9,} vectors: build {r['build_s']:.1f} s, search {r['search_s']:.1f} s "
                f"({r['queries'] / r['search_s']:,.0f} queries/s), total {r['total_s']:.1f} s; "
                f"peak RSS {r['peak_rss_mib']:,.0f} MiB (vectors + queries {r['data_mib']:,.0f} MiB)")
        if "recall_at_10" in r:
            line += f"; recall@10 vs exact {r['recall_at_10']:.4f} on {r['recall_queries']:,} queries"
        print(line)


if __name__ == "__main__":
    main()
