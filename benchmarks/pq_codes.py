"""Product-quantiser code size for ivfpq: how many of the exact top-10 each code size puts among its
first ``refine`` x 10 candidates, and what a single query costs, on gallery_scale's clustered vectors.

    .venv/bin/python benchmarks/pq_codes.py 1000000 | tee docs/scale/pq_codes-1M.txt   # about 15 min

One gallery of N x 1280 rows (``gallery_scale.World``, rounded to float16 as the store holds them),
1,000 text-like queries and their exact top-10; one coarse quantiser of 2 sqrt(N) lists (k-means, 10
iterations) shared by every code size, so that only the codes differ. For each code size (16, 8
and 4 dimensions a code byte: 80, 160 and 320 bytes at 1280 dims) and each nprobe of 16-256: the
share of the exact top-10 among the first refine x 10 candidates by the codes, which is the
recall@10 that ivfpq reaches after re-scoring them exactly, for refine 40-640; and the p95 of
single-query faiss searches (100 queries) asking for 800 and 6,400 candidates. One JSON line a
code size; the choice it informed is ``index.PQ_DIMS``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from gallery_scale import World  # noqa: E402 (the benchmark beside this one)

D, K = 1280, 10
NPROBES, REFINES = (16, 32, 64, 128, 256), (40, 80, 160, 320, 640)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    start = time.time()
    world = World(n, D)
    objects = world.track_objects()
    x = np.empty((n, D), np.float32)
    for s in range(0, n, 65536):
        x[s:s + 65536] = world.views(objects[np.arange(s, min(n, s + 65536)) % world.tracks], seed=1000 + s)
    x = x.astype(np.float16).astype(np.float32)  # as the store holds them
    q = world.queries(1000, seed=1)
    print(f"data {time.time() - start:.0f}s", flush=True)

    start = time.time()
    exact = np.zeros((len(q), K), np.int64)
    best = np.full((len(q), K), -np.inf, np.float32)
    for s in range(0, n, 100_000):
        scores = q @ x[s:s + 100_000].T
        merged = np.concatenate([best, scores], 1)
        ids = np.concatenate([exact, np.broadcast_to(np.arange(s, s + scores.shape[1]), scores.shape)], 1)
        order = np.argsort(-merged, 1)[:, :K]
        best, exact = np.take_along_axis(merged, order, 1), np.take_along_axis(ids, order, 1)
    print(f"exact {time.time() - start:.0f}s", flush=True)

    start = time.time()
    nlist = max(1, min(int(2 * math.sqrt(n)), n // 39))
    sample = x[np.sort(np.random.default_rng(0).choice(n, 64 * nlist, replace=False))]
    kmeans = faiss.Kmeans(D, nlist, niter=10, seed=1)
    kmeans.train(sample)
    coarse = faiss.IndexFlatIP(D)
    coarse.add(kmeans.centroids)
    assign = np.concatenate([coarse.search(x[s:s + 65536], 1)[1][:, 0] for s in range(0, n, 65536)])
    print(f"ivf train+assign {time.time() - start:.0f}s nlist {nlist}", flush=True)

    for dims_a_byte in (16, 8, 4):
        start = time.time()
        quantiser = faiss.IndexFlatIP(D)
        quantiser.add(kmeans.centroids)
        ivf = faiss.IndexIVFPQ(quantiser, D, nlist, D // dims_a_byte, 8, faiss.METRIC_INNER_PRODUCT)
        ivf.train(sample[:max(39 * 256 * 4, 20000)])  # the lists are trained: only the codes learn
        for s in range(0, n, 65536):
            block, lists = np.ascontiguousarray(x[s:s + 65536]), np.ascontiguousarray(assign[s:s + 65536])
            ivf.add_core(len(block), faiss.swig_ptr(block), None, faiss.swig_ptr(lists))
        out = {"name": f"pq{dims_a_byte}d", "bytes": ivf.code_size, "build_s": round(time.time() - start)}
        for nprobe in NPROBES:
            ivf.nprobe = nprobe
            candidates = ivf.search(q, K * REFINES[-1])[1]
            for refine in REFINES:
                found = np.mean([len(set(c[:K * refine]) & set(e)) / K for c, e in zip(candidates, exact)])
                out[f"{nprobe}/{refine}"] = round(float(found), 4)
            for wanted in (80, 640):
                times = []
                for i in range(100):
                    t = time.perf_counter()
                    ivf.search(q[i:i + 1], K * wanted)
                    times.append(time.perf_counter() - t)
                out[f"{nprobe}_R{wanted}_p95ms"] = round(1000 * float(np.percentile(times, 95)), 2)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
