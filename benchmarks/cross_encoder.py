"""The cross-encoder on a selection run: train it, then re-score each query's first candidates at several
weights and depths, on the run's test split (seed 1, never the reported one).

The first ranking is the run's recorded query pipeline (RUN/query.json) with the gallery balance on
and re-ranking off (the default run's, chosen on seed 1: docs/shift/gallery-adaptation-seed1.txt),
asked for the first ``--depth`` names; each candidate's score plus ``weight`` times the matcher's
logit re-orders them. Prints official mAP@10 overall and per kind, the matcher's training time, and
one JSON line last.

    .venv/bin/python benchmarks/cross_encoder.py --run log/dev1-p4 | tee docs/shift/cross-encoder-seed1.txt
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from traffic_retrieval.core.evaluation import evaluate
from traffic_retrieval.core.submission import write_submission
from traffic_retrieval.retrieval.balance import Balance
from traffic_retrieval.retrieval.cross_encoder import MatcherShape, image_tokens, match_scores, text_tokens
from traffic_retrieval.retrieval.encode import EncodeSettings, encode_batches
from traffic_retrieval.retrieval.gallery import encode_gallery
from traffic_retrieval.retrieval.pipeline import rank_queries
from traffic_retrieval.retrieval.run_settings import resolve
from traffic_retrieval.training.matching import MatcherTraining, train_matcher

from study_run import StudyRun, official


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--image-block", type=int, default=2, help="image intermediates from the end (2: stride 16 for "
                                                                "resnet10t, a 4 x 4 grid at 64 px)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.01, 0.02, 0.05, 0.1, 0.2])
    ap.add_argument("--depths", type=int, nargs="+", default=[10, 20, 50])
    a = ap.parse_args()
    run = StudyRun.open(a.run)
    encode = EncodeSettings(cache_dir=Path("data/cache"), progress=False)
    shape = MatcherShape(image_block=a.image_block)
    start = time.perf_counter()
    matcher = train_matcher(run.loaded, run.data, run.vocab, encode, shape, MatcherTraining(epochs=a.epochs))
    trained = time.perf_counter() - start
    settings = replace(resolve(a.run).query, balance=Balance(), rerank=None)
    gallery = encode_gallery(run.loaded, run.paths, encode, settings.flip_tta)
    depth = max(a.depths)
    ranking = rank_queries(run.loaded, gallery, run.queries, run.vocab, replace(settings, topk=depth))
    features = lambda m, images: image_tokens(m, images, shape.image_block)  # noqa: E731
    tokens = torch.from_numpy(np.concatenate([b[0] for b in encode_batches(run.loaded, run.paths, encode,
                                                                          features=features)]))
    distinct = list(dict.fromkeys(run.queries))
    with torch.no_grad():
        text = text_tokens(run.loaded, distinct, shape.text_length)
    row = {q: i for i, q in enumerate(distinct)}
    pairs = np.stack([np.repeat([row[q] for q in run.queries], depth), ranking.indices.ravel()], 1)
    logits = match_scores(matcher, tokens, text, pairs).reshape(len(run.queries), depth)
    rows = {}
    print(f"Cross-encoder on {run.data}, run {a.run}: trained in {trained:.0f} s ({a.epochs} epochs, image block "
          f"{a.image_block}, {tokens.shape[1]} cells of {tokens.shape[2]}); official mAP@10 on its test split, the "
          f"first ranking with the gallery balance.\n\n| depth, weight | all | vehicle | pedestrian |\n|---|---|---|---|")
    for d in a.depths:
        for w in a.weights:
            if w == 0 and d != a.depths[0]:
                continue
            fused = ranking.scores[:, :d] + w * logits[:, :d]
            order = np.argsort(-fused, axis=1, kind="stable")[:, :10]
            top = np.take_along_axis(ranking.indices[:, :d], order, axis=1)
            names = [[gallery.names[j] for j in r] for r in top]
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "s.json"
                write_submission(out, list(zip(run.queries, names)))
                r = official(evaluate(out, run.data / "test" / "test_ground_truth.txt"))
            rows[f"depth {d}, weight {w:g}"] = r
            print(f"| depth {d}, weight {w:g} | {r['all']:.4f} | {r['vehicle']:.4f} | {r['pedestrian']:.4f} |", flush=True)
    print("\n" + json.dumps({"rows": rows, "train_seconds": trained}))


if __name__ == "__main__":
    main()
