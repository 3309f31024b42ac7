"""Ranking: the seed-style path vs the project's, same tiny model, same synthetic gallery, one run.

Seed style (what the A3R notebooks did): gallery images through a DataLoader with num_workers=0,
then, one batch of images at a time, ``torch.nn.functional.cosine_similarity`` broadcast over
texts x images x dim, and a full ``argsort`` of every query's row.
Project (``traffic_retrieval.retrieval.pipeline``): DataLoader workers, embeddings cached on disk by content
(cold: the first run fills the cache; warm: the second reads it), one blocked matrix product and
top-k (``rank.topk_blocked``).

Each path runs in its own process, so that its peak memory (``getrusage`` maxrss; DataLoader
workers reported apart) is its own. The model is the tiny one with random weights, saved once
and loaded by every path; it prints how many top-10 lists agree in order and how many images
they share (the project ranks the store's float16 rows, so near-ties may swap).

    .venv/bin/python benchmarks/ranking_speed.py [--images 5000] [--queries 2000] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import psutil
import torch

from traffic_retrieval.core.images import list_images
from traffic_retrieval.retrieval.encode import EncodeSettings, encode_images, encode_texts
from traffic_retrieval.retrieval.store import gallery_embeddings
from traffic_retrieval.core.labels import read_queries
from traffic_retrieval.retrieval.models import ModelSettings, TINY_MODEL, load_model
from traffic_retrieval.training.prepare import Layout
from traffic_retrieval.retrieval.rank import topk_blocked
from traffic_retrieval.synthetic.generate import generate

PATHS = ("seed", "project-cold", "project-warm")
K = 10


def high_water_mib() -> float:
    """Peak RSS of this process (VmHWM: unlike getrusage's maxrss, not inherited from the parent at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: maxrss, an upper bound


@contextmanager
def sampled(result: dict, key: str, every: float = 0.002) -> Iterator[None]:
    """Over the block, in MiB: the peak RSS growth of this process (``key``) and the peak summed PSS of its
    child processes, the DataLoader workers (``key``_workers; PSS shares their copy-on-write pages
    fairly). Sampled in a thread; torch releases the GIL while it computes."""
    proc, done = psutil.Process(), threading.Event()
    start, peak, workers = proc.memory_info().rss, [0], [0]

    def sample() -> None:
        for n in itertools.count():
            peak[0] = max(peak[0], proc.memory_info().rss)
            if n % 10 == 0:
                try:
                    workers[0] = max(workers[0], sum(c.memory_full_info().pss for c in proc.children(recursive=True)))
                except psutil.Error:  # a worker exited between listing and reading
                    pass
            if done.wait(every):
                return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        result[key] = max(0, max(peak[0], proc.memory_info().rss) - start) / 2**20
        result[f"{key}_workers"] = workers[0] / 2**20


def seed_ranking(text_emb: torch.Tensor, image_batches: list[torch.Tensor], k: int) -> np.ndarray:
    """Cosine similarity broadcast per image batch (texts x batch x dim), then a full sort of each row."""
    sims = torch.cat([torch.nn.functional.cosine_similarity(text_emb[:, None, :], batch[None, :, :], dim=-1)
                      for batch in image_batches], dim=1)
    return torch.argsort(sims, dim=1, descending=True)[:, :k].numpy()


def child(args: argparse.Namespace) -> None:
    """One path, timed stage by stage; prints a JSON line and saves its top-k indices."""
    loaded = load_model(ModelSettings(TINY_MODEL, str(args.checkpoint)))
    layout = Layout(args.data)
    queries = read_queries(layout.queries)[:args.queries]
    paths = list_images(layout.images("test"))[:args.images]
    r: dict = {"path": args.child, "images": len(paths), "queries": len(queries),
               "baseline_mib": psutil.Process().memory_info().rss / 2**20}
    seed = args.child == "seed"
    start = time.perf_counter()
    with sampled(r, "encode_mib"):
        if seed:
            gallery, ok = encode_images(loaded, paths, EncodeSettings(batch_size=args.batch_size, workers=0, progress=False))
        else:
            gallery, ok = gallery_embeddings(loaded, paths, EncodeSettings(cache_dir=args.cache, batch_size=args.batch_size, workers=args.workers, progress=False))
    r["gallery_s"] = time.perf_counter() - start
    t = time.perf_counter()
    text = encode_texts(loaded, queries)
    r["texts_s"] = time.perf_counter() - t
    t = time.perf_counter()
    with sampled(r, "rank_mib"):
        if seed:
            batches = [torch.from_numpy(gallery[i:i + args.batch_size]) for i in range(0, len(gallery), args.batch_size)]
            top = seed_ranking(torch.from_numpy(text), batches, K)
        else:
            top = topk_blocked(text, gallery, K, valid=ok)[1]
    r["rank_s"] = time.perf_counter() - t
    r["total_s"] = time.perf_counter() - start
    r["peak_rss_mib"] = high_water_mib()
    np.save(args.out / f"{args.child}.npy", top)
    print(json.dumps(r))


def run_path(path: str, args: argparse.Namespace, work: Path) -> dict:
    command = [sys.executable, __file__, "--child", path, "--data", str(work / "data"), "--checkpoint",
               str(work / "random.pt"), "--cache", str(work / "cache"), "--out", str(work), "--images", str(args.images),
               "--queries", str(args.queries), "--workers", str(args.workers), "--batch-size", str(args.batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{path} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5000, help="gallery images (synthetic test split)")
    p.add_argument("--queries", type=int, default=2000, help="queries (the first lines of test_text.txt)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the project path")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="runs of every path; figures are their medians")
    p.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    for hidden in ("data", "checkpoint", "cache", "out"):
        p.add_argument(f"--{hidden}", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    if args.queries > args.images:
        p.error("the synthetic test split has one query per image: --queries must not exceed --images")

    with tempfile.TemporaryDirectory(prefix="ranking-speed-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        generate(work / "data", train=0, val=0, test=args.images, seed=args.seed, workers=2, progress=False)
        print(f"synthetic gallery: {args.images} images, {args.queries} queries, generated in "
              f"{time.perf_counter() - start:.0f} s; {psutil.cpu_count()} CPUs, torch {torch.__version__}")
        torch.manual_seed(args.seed)
        torch.save(load_model(ModelSettings(TINY_MODEL, None)).model.state_dict(), work / "random.pt")
        runs = {path: [] for path in PATHS}
        for _ in range(args.repeats):  # each repeat starts cold: an empty cache
            shutil.rmtree(work / "cache", ignore_errors=True)
            for path in PATHS:
                runs[path].append(run_path(path, args, work))
        results = {path: {key: float(np.median([r[key] for r in rs])) for key in rs[0] if key != "path"}
                   for path, rs in runs.items()}
        tops = {path: np.load(work / f"{path}.npy") for path in PATHS}

    print(f"\nmedians of {args.repeats} runs (each repeat from an empty cache: cold, then warm)")
    print(f"{'path':<14}{'gallery s':>10}{'texts s':>9}{'rank s':>9}{'total s':>9}"
          f"{'RSS at start':>13}{'peak RSS':>9}{'workers':>9}{'rank +':>8}  (MiB)")
    for path, r in results.items():
        print(f"{path:<14}{r['gallery_s']:>10.2f}{r['texts_s']:>9.2f}{r['rank_s']:>9.3f}{r['total_s']:>9.2f}"
              f"{r['baseline_mib']:>13.0f}{r['peak_rss_mib']:>9.0f}{r['encode_mib_workers']:>9.0f}{r['rank_mib']:>8.0f}")
    seed = results["seed"]
    same = [float(np.mean((tops[path] == tops["seed"]).all(axis=1))) for path in PATHS[1:]]
    shared = [float(np.mean([len(set(a) & set(b)) / K for a, b in zip(tops[path], tops["seed"])])) for path in PATHS[1:]]
    print(f"\nsame top-{K} as the seed path, in order: {same[0]:.2%} of queries (cold), {same[1]:.2%} (warm); "
          f"images shared: {shared[0]:.2%}, {shared[1]:.2%} (the project ranks the store's float16 rows)")
    print(f"end to end (gallery + texts + ranking): {seed['total_s'] / results['project-cold']['total_s']:.1f}x cold, "
          f"{seed['total_s'] / results['project-warm']['total_s']:.1f}x warm (target >= 10x)")
    print(f"ranking step alone: {seed['rank_s'] / results['project-warm']['rank_s']:.0f}x "
          f"(warm run; cold run {seed['rank_s'] / results['project-cold']['rank_s']:.0f}x; target >= 50x)")
    print(f"ranking memory growth: seed {seed['rank_mib']:.0f} MiB, project {results['project-warm']['rank_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
