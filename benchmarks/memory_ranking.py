"""Peak memory of ranking N queries against N gallery images with rank.topk_blocked.

Each measurement runs in a fresh subprocess, so its peak resident set size (``VmHWM`` of
``/proc/self/status``) is that of the ranking alone (plus the interpreter, numpy and torch).
Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries the parent's peak into it across the
fork and exec, so under a pytest process that had grown to 2.2 GB it reported 2.2 GB. For comparison it prints what the seed's broadcast
``cosine_similarity(texts[:, None], images[None])`` would need for its texts x images x dim
float32 tensor, computed, never allocated.

    .venv/bin/python benchmarks/memory_ranking.py                     # 20,000 x 20,000 at dim 128 and 1280
    .venv/bin/python benchmarks/memory_ranking.py --n 5000 --dims 64  # smaller
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

GIB = 2 ** 30
LIMIT = 2 * GIB


def peak_rss_bytes() -> int:
    """This process's own peak resident set size (its address space's high-water mark)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024  # reported in kB


def measure(n_queries: int, n_images: int, dim: int, k: int = 10, block: int = 1024, seed: int = 0) -> dict:
    """Rank random unit vectors in this process; peak RSS and time (run it in a fresh process)."""
    import time

    import numpy as np

    from traffic_retrieval.retrieval.rank import topk_blocked

    rng = np.random.default_rng(seed)
    queries = rng.standard_normal((n_queries, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    gallery = rng.standard_normal((n_images, dim), dtype=np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    start = time.perf_counter()
    scores, indices = topk_blocked(queries, gallery, k, block=block)
    seconds = time.perf_counter() - start
    assert indices.shape == (n_queries, k) and np.all(np.diff(scores, axis=1) <= 0)
    return {
        "queries": n_queries, "images": n_images, "dim": dim, "k": k, "block": block, "seconds": round(seconds, 2),
        "peak_rss_bytes": peak_rss_bytes(),
        "inputs_bytes": queries.nbytes + gallery.nbytes,
        "broadcast_bytes": n_queries * n_images * dim * 4,  # the seed's texts x images x dim tensor
    }


def measure_in_subprocess(n_queries: int, n_images: int, dim: int, **kwargs) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r}); "
            f"from memory_ranking import measure; "
            f"print(json.dumps(measure({n_queries}, {n_images}, {dim}, **{kwargs!r})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=20_000, help="queries and gallery images (default 20,000)")
    p.add_argument("--dims", type=int, nargs="+", default=[128, 1280], help="embedding sizes (1280: ViT-bigG-14)")
    p.add_argument("--block", type=int, default=1024, help="queries scored at a time")
    a = p.parse_args(argv)
    worst = 0
    for dim in a.dims:
        r = measure_in_subprocess(a.n, a.n, dim, block=a.block)
        worst = max(worst, r["peak_rss_bytes"])
        print(f"{r['queries']:,} queries x {r['images']:,} images, dim {dim}: peak RSS "
              f"{r['peak_rss_bytes'] / GIB:.2f} GiB (inputs {r['inputs_bytes'] / GIB:.2f} GiB), {r['seconds']} s; "
              f"the seed's broadcast would need {r['broadcast_bytes'] / GIB:,.0f} GiB")
    print(f"limit 2 GiB: {'met' if worst < LIMIT else 'EXCEEDED'}")
    return 0 if worst < LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
