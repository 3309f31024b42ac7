"""Gallery scale: exact search and each approximate index over N clustered synthetic vectors of
dimension D, with 10,000 queries, through the project's own store, index and search code.

    .venv/bin/python benchmarks/gallery_scale.py --images 2000000 --dim 1280 | tee docs/scale/gallery_scale-2M.txt
    .venv/bin/python benchmarks/gallery_scale.py --extrapolate docs/scale/gallery_scale-1M.txt docs/scale/gallery_scale-2M.txt

The vectors are written as the embedding store writes a gallery (float16 shards of 2,048 rows and
a manifest); every kind then runs in its own process, so that the peak RSS printed (VmHWM) is that
kind's alone: exact search first (``flat``: its top-10 is the reference for recall), then each
approximate index, built from the shards, its search depth tuned on 2,000 other queries (``--tuning-queries``) as
``traffic-retrieval index`` tunes it, and measured on the 10,000. Per kind: build time, peak RSS,
recall@10 against exact, latency of single queries (p50/p95, in ms; with a kind filter too), and
the throughput of one batch of all the queries. The last line is one JSON object.

The vectors are not uniform noise, which no index can compress and no real gallery resembles:
like CLIP embeddings of camera crops they lie near a 64-dimensional subspace, around a common
mean direction, grouped in 256 attribute-like clusters, each holding tracks of 20 views of one
object (two thirds of the variance about the mean lies in the subspace, by construction: squared
norms 64 for a cluster centre and 23 for an object's spread in it, against 27 for its own part
outside and 20 for a view's); the queries are text-like, a described object (a cluster's
attributes, no track's identity) on the far side of a modality gap. The output gives the median
cosine of a query to its 1st, 10th and 11th neighbours and to a random image.

``--extrapolate A B`` reads the JSON lines of two runs (two sizes, one dim) and extrapolates each
figure to 10M and 100M images as a power law through the two points, printing the arithmetic,
beside the memory that follows from the formats alone.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from traffic_retrieval.retrieval.gallery import Gallery
from traffic_retrieval.retrieval.index import HNSW_M, KINDS, VectorIndex, pq_shape, recall
from traffic_retrieval.retrieval.rank import default_budget
from traffic_retrieval.retrieval.shards import Embeddings, finish_store, write_shard
from traffic_retrieval.retrieval.store import chunk_bounds

K, CHUNK = 10, 2048
RANK, CLUSTERS, TRACK = 64, 256, 20  # subspace, clusters, views of one object
# norms (a cluster centre's is about 8): the subspace holds two thirds of the variance around the mean
MEAN, SPREAD, OWN, VIEW, GAP = 9.4, 0.6, 5.2, 4.5, 1.5
TUNING_QUERIES = 2000


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class World:
    """The shared structure of gallery and queries (``seed`` fixed): a 64-dimensional subspace holding
    a common mean direction and 256 attribute-like clusters, the direction texts lie apart in (CLIP's
    modality gap), and ``images / 20`` tracks (objects), each a point of a cluster with a
    full-dimensional part of its own."""

    def __init__(self, images: int, dim: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.basis = np.linalg.qr(rng.standard_normal((dim, RANK)))[0].astype(np.float32)
        self.mean = self.basis @ rng.standard_normal(RANK).astype(np.float32)
        self.mean *= MEAN / np.linalg.norm(self.mean)
        self.centres = rng.standard_normal((CLUSTERS, RANK)).astype(np.float32)
        gap = rng.standard_normal(dim).astype(np.float32)
        gap -= self.basis @ (self.basis.T @ gap)
        self.gap = gap / np.linalg.norm(gap)
        self.tracks = max(1, images // TRACK)
        self.seed = seed

    def objects(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """New objects: a cluster's centre moved within the subspace, plus a part outside it."""
        z = self.centres[rng.integers(0, CLUSTERS, n)] + SPREAD * rng.standard_normal((n, RANK), dtype=np.float32)
        own = rng.standard_normal((n, self.dim), dtype=np.float32) * (OWN / math.sqrt(self.dim))
        return z @ self.basis.T + own

    def track_objects(self) -> np.ndarray:
        """The gallery's objects (tracks x dim), drawn once."""
        return self.objects(self.tracks, np.random.default_rng(self.seed + 1))

    def views(self, objects: np.ndarray, seed: int) -> np.ndarray:
        """One camera view (unit vector) of each object."""
        rng = np.random.default_rng(seed)
        x = objects + self.mean + VIEW / math.sqrt(self.dim) * rng.standard_normal(objects.shape, dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def queries(self, n: int, seed: int) -> np.ndarray:
        """Text-like queries: a described object (attributes of a cluster, no identity of a track), on the
        far side of the modality gap."""
        x = self.objects(n, np.random.default_rng(seed)) + self.mean
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x += GAP * self.gap
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_gallery(folder: Path, images: int, dim: int) -> dict:
    """The gallery as the store writes one: float16 shards, image sizes (alternately wide and tall, so
    half of each kind), manifest."""
    start = time.perf_counter()
    world = World(images, dim)
    objects = world.track_objects()
    folder.mkdir(parents=True, exist_ok=True)
    bounds = chunk_bounds(images, CHUNK)
    sizes = np.array([[96, 56], [40, 90]], np.int32)
    for block in range(0, len(bounds), 32):
        first, last = bounds[block][0], bounds[min(block + 32, len(bounds)) - 1][1]
        rows = world.views(objects[np.arange(first, last) % world.tracks], seed=1000 + block)
        for a, b in bounds[block:block + 32]:
            write_shard(folder, a, rows[a - first:b - first], sizes[np.arange(a, b) % 2])
    finish_store(folder, bounds, [f"{i:09d}.jpg" for i in range(images)], {"identity": {"model": "synthetic"}})
    return {"store_s": time.perf_counter() - start, "store_gib": images * dim * 2 / 2**30,
            "generate_peak_rss_mib": peak_rss_mib()}


def latencies_ms(gallery: Gallery, queries: np.ndarray, kind=None) -> tuple[float, float]:
    times = []
    for q in queries:
        start = time.perf_counter()
        gallery.search(q[None], K, kind)
        times.append(1000 * (time.perf_counter() - start))
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def index_bytes(index: VectorIndex) -> int:
    """Memory of the faiss index itself, from its formats (not serialised: that would copy it)."""
    f = index.index
    if index.kind == "ivfpq":
        return f.ntotal * (f.code_size + 8) + f.nlist * index.dim * 4
    if index.kind == "hnsw":
        return f.ntotal * index.dim * 2 + f.hnsw.neighbors.size() * 4
    return 0


def run_kind(kind: str, args: argparse.Namespace) -> dict:
    """One kind, in this (child) process."""
    base_rss = peak_rss_mib()
    store = Embeddings.open(args.workdir / "store")
    world = World(args.images, args.dim)
    queries, tuning = world.queries(args.queries, seed=1), world.queries(args.tuning_queries, seed=3)
    budget = args.budget or default_budget()
    r: dict = {"kind": kind, "images": args.images, "dim": args.dim, "queries": args.queries,
               "budget_mib": budget / 2**20, "baseline_rss_mib": base_rss}
    start = time.perf_counter()
    index = VectorIndex.build(store, kind, budget)
    r["build_s"] = time.perf_counter() - start
    if kind != "flat":
        start = time.perf_counter()
        index.tune(tuning)
        depth = ", ".join(f"{key} {index.params[key]}" for key in (index.depth_name, "refine") if key in index.params)
        r.update(tune_s=time.perf_counter() - start, depth=depth, index_mib=index_bytes(index) / 2**20)
    gallery = Gallery(store.names, store.rows, store.ok, store.kinds, index=None if kind == "flat" else index,
                      budget=budget)
    start = time.perf_counter()
    scores, top = gallery.search(queries, K + (kind == "flat"))  # exact: the 11th too, for the cosines
    r["batch_s"] = time.perf_counter() - start
    r["batch_queries_per_s"] = args.queries / r["batch_s"]
    top = top[:, :K]
    exact_file = args.workdir / "exact.npy"
    if kind == "flat":
        np.save(exact_file, top)
        pairs = queries[:100] @ store.rows[:CHUNK].T
        r["cosines"] = {"1st": float(np.median(scores[:, 0])), "10th": float(np.median(scores[:, K - 1])),
                        "11th": float(np.median(scores[:, K])), "random pair": float(np.median(pairs))}
    r["recall@10"] = recall(top, np.load(exact_file))
    single = queries[:args.exact_single if kind == "flat" else args.single]
    r["single_queries"] = len(single)
    r["p50_ms"], r["p95_ms"] = latencies_ms(gallery, single)
    r["filtered_p50_ms"], r["filtered_p95_ms"] = latencies_ms(gallery, single[:max(1, len(single) // 4)], "pedestrian")
    r["peak_rss_mib"] = peak_rss_mib()
    return r


def table(results: list[dict]) -> str:
    head = (f"{'kind':<6} {'depth':<20} {'build s':>9} {'peak RSS MiB':>13} {'recall@10':>9} {'p50 ms':>9} "
            f"{'p95 ms':>9} {'kind-filtered p95 ms':>21} {'batch q/s':>10} {'index MiB':>10}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r['kind']:<6} {r.get('depth', 'exact'):<20} {r['build_s']:>9.1f} {r['peak_rss_mib']:>13,.0f} "
                     f"{r['recall@10']:>9.4f} {r['p50_ms']:>9.2f} {r['p95_ms']:>9.2f} {r['filtered_p95_ms']:>21.2f} "
                     f"{r['batch_queries_per_s']:>10,.1f} {r.get('index_mib', 0):>10,.0f}")
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> None:
    import faiss

    created = args.workdir is None
    args.workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gallery_scale-", dir="/tmp"))
    kinds = [k for k in args.kinds.split(",") if k]
    fp16_mib = args.images * args.dim * 2 / 2**20
    print(f"gallery_scale: {args.images:,} images x {args.dim} dims (float16 store {fp16_mib:,.0f} MiB), "
          f"{args.queries:,} queries, top-{K}; faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads; "
          f"budget {(args.budget or default_budget()) / 2**20:,.0f} MiB; work folder {args.workdir}", flush=True)
    try:
        child = [sys.executable, __file__, *sys.argv[1:], "--workdir", str(args.workdir), "--child"]
        done = subprocess.run([*child, "store"], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"writing the store failed:\n{done.stderr[-3000:]}")
        store = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"store written in {store['store_s']:.1f} s ({store['store_gib']:.2f} GiB), peak RSS "
              f"{store['generate_peak_rss_mib']:,.0f} MiB", flush=True)
        results = []
        for kind in ["flat"] + [k for k in kinds if k != "flat"]:
            done = subprocess.run([*child, kind], capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{kind} failed:\n{done.stderr[-3000:]}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(f"{kind}: build {r['build_s']:.1f} s, batch of {args.queries:,} in {r['batch_s']:.1f} s, recall@10 "
                  f"{r['recall@10']:.4f}, p95 {r['p95_ms']:.2f} ms over {r['single_queries']} single queries, peak "
                  f"RSS {r['peak_rss_mib']:,.0f} MiB", flush=True)
    finally:
        if not args.keep:  # what this run wrote, and the folder if it made it
            shutil.rmtree(args.workdir / "store", ignore_errors=True)
            (args.workdir / "exact.npy").unlink(missing_ok=True)
            if created:
                args.workdir.rmdir()
    print()
    print(table(results))
    flat = results[0]
    print(f"\nmedian cosine of a query to its neighbours (exact, {args.queries:,} queries): " +
          ", ".join(f"{name} {value:.3f}" for name, value in flat["cosines"].items()))
    print(f"exact: peak RSS {flat['peak_rss_mib']:,.0f} MiB = baseline {flat['baseline_rss_mib']:,.0f} + "
          f"{flat['peak_rss_mib'] - flat['baseline_rss_mib']:,.0f} MiB of search (budget {flat['budget_mib']:,.0f} MiB); "
          f"twice the float16 gallery: {2 * fp16_mib:,.0f} MiB")
    print(json.dumps({"images": args.images, "dim": args.dim, "queries": args.queries, "fp16_mib": fp16_mib,
                      "store": store, "kinds": {r["kind"]: r for r in results}}))


def extrapolate(files: list[Path]) -> None:
    """Power laws through two runs, y = y1 (n / n1)^e with e = log(y2 / y1) / log(n2 / n1)."""
    runs = sorted((json.loads(f.read_text().strip().splitlines()[-1]) for f in files), key=lambda r: r["images"])
    (a, b), dim = runs, runs[0]["dim"]
    n1, n2 = a["images"], b["images"]
    print(f"extrapolation from {n1:,} and {n2:,} images x {dim} dims: y = y({n1:,}) x (n / {n1:,})^e, "
          f"e = log(y({n2:,}) / y({n1:,})) / log({n2 / n1:g})")
    for kind in a["kinds"]:
        print(f"\n{kind}")
        for key in ("build_s", "batch_s", "p95_ms", "peak_rss_mib"):
            y1, y2 = a["kinds"][kind][key], b["kinds"][kind][key]
            if not (y1 > 0 and y2 > 0):
                continue
            e = math.log(y2 / y1) / math.log(n2 / n1)
            at = ", ".join(f"{n:,}: {y1:,.2f} x {n / n1:g}^{e:.2f} = {y1 * (n / n1) ** e:,.1f}" for n in (10**7, 10**8))
            print(f"  {key:<13} {y1:>10,.2f} -> {y2:>10,.2f}  e = {e:.2f};  {at}")
    m, _ = pq_shape(dim, 10**8)
    print(f"\nmemory from the formats, dim {dim}: float16 rows {dim * 2} B, ivfpq code {m} B + id 8 B, "
          f"hnsw float16 row {dim * 2} B + level-0 links {2 * HNSW_M} x 4 B; ivfpq re-scores its "
          f"'refine' x k rows from disk a query")
    for n in (10**7, 10**8):
        print(f"  {n:>11,} images: store {n * dim * 2 / 2**30:,.0f} GiB on disk; ivfpq {n * (m + 8) / 2**30:,.1f} GiB "
              f"in memory; hnsw {n * (dim * 2 + 2 * HNSW_M * 4) / 2**30:,.0f} GiB in memory")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated; flat (the reference) always runs")
    p.add_argument("--tuning-queries", type=int, default=TUNING_QUERIES,
                   help="queries the approximate kinds' depth is tuned on, half of them held out (as index tunes)")
    p.add_argument("--single", type=int, default=1000, help="queries timed one at a time, approximate kinds")
    p.add_argument("--exact-single", type=int, default=20, help="queries timed one at a time, exact")
    p.add_argument("--budget", type=float, default=None, help="GiB (default: a quarter of the machine's memory)")
    p.add_argument("--workdir", type=Path, default=None, help="where the store goes (default: a new folder in /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the store written in the work folder")
    p.add_argument("--extrapolate", nargs=2, type=Path, metavar=("SMALLER", "LARGER"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.dim < RANK:
        p.error(f"--dim must be at least {RANK}, the dimension of the vectors' subspace")
    args.budget = int(args.budget * 2**30) if args.budget else None
    if args.extrapolate:
        extrapolate(args.extrapolate)
    elif args.child:
        if args.child == "store":
            print(json.dumps(write_gallery(args.workdir / "store", args.images, args.dim)))
        else:
            print(json.dumps(run_kind(args.child, args)))
    else:
        measure(args)


if __name__ == "__main__":
    main()
