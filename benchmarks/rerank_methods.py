"""Which adaption re-ranking method to default to: each method (and none) on the same first
ranking of finished ablation seeds, official and strict mAP@10 and the time per 1,000 queries.

    .venv/bin/python benchmarks/rerank_methods.py [--work data/ablation] [--seeds 0 1 2]

Reads what `traffic-retrieval ablation` left under WORK/seedS (data, the augmented fine-tuned
checkpoint, the embedding cache); ranks with the prompt enhancement, as the ladder does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from traffic_retrieval.core.ground_truth import read_ground_truth
from traffic_retrieval.core.layout import find_vocabulary, split_queries_and_gallery
from traffic_retrieval.retrieval.encode import EncodeSettings
from traffic_retrieval.retrieval.gallery import encode_gallery
from traffic_retrieval.retrieval.pipeline import QuerySettings, rank_queries
from traffic_retrieval.core.metrics import score
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.retrieval.rerank import METHODS, RerankSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("data/ablation"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--top-k", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--weight", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    args = parser.parse_args()
    settings = {"none": None} | {
        f"{m} k={k} w={w}": RerankSettings(method=m, top_k=k, weight=w)
        for m in METHODS for k in args.top_k for w in args.weight
    }
    table: dict[str, list[tuple[float, float, float]]] = {name: [] for name in settings}
    for seed in args.seeds:
        root = args.work / f"seed{seed}"
        data = root / "datasets"
        loaded = load_model(ModelSettings("TR-ViT-Tiny", str(root / "log" / "finetune-aug")))
        queries, paths = split_queries_and_gallery(data, "test")
        gallery = encode_gallery(loaded, paths, EncodeSettings(cache_dir=root / "cache", progress=False))
        _, relevant, kinds = read_ground_truth(data / "test" / "test_ground_truth.txt")
        for name, s in settings.items():
            r = rank_queries(loaded, gallery, queries, find_vocabulary(data), QuerySettings(rerank=s))
            m = score(r.top_names(10), relevant, kinds)
            table[name].append((m["map_official"], m["map_strict"], r.rerank_seconds * 1000 / len(queries)))
    print(f"seeds {args.seeds}: mean over seeds")
    print(f"{'method':<28}{'official':>10}{'strict':>10}{'s/1k q':>10}")
    for name, rows in sorted(table.items(), key=lambda kv: -np.mean([r[0] for r in kv[1]])):
        a = np.array(rows)
        print(f"{name:<28}{a[:, 0].mean():>10.4f}{a[:, 1].mean():>10.4f}{a[:, 2].mean():>10.3f}")


if __name__ == "__main__":
    main()
