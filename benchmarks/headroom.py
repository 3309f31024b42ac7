"""Where the remaining errors are: what each attribute group's head costs the fused ranking.

For a reproduce run, ranks its test split as the notebook does without re-ranking (CLIP's logit plus
the attribute heads' log-probabilities, weight 1, the heads reading the gallery centred on its own
mean, flip TTA), then again with one group's head replaced by an oracle that knows that group's true
value for every gallery image (the synthetic data knows it), one group at a time. The gain of a group
is what a perfect reader of that attribute would add: it says where a better image tower would pay,
and it is a diagnosis, not a choice, so any seed serves. Prints official mAP@10 overall and per kind,
the heads' accuracy per group on the gallery, and one JSON line last:

    .venv/bin/python benchmarks/headroom.py --run log/dev1-lr2 > docs/shift/headroom-seed1.txt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from traffic_retrieval.core.attribute_groups import MISSING, query_targets
from traffic_retrieval.core.ground_truth import read_ground_truth
from traffic_retrieval.core.metrics import score
from traffic_retrieval.core.routing import DEFAULT_VEHICLE_PROMPT, enhance, route
from traffic_retrieval.retrieval.encode import EncodeSettings, encode_texts
from traffic_retrieval.retrieval.fusion import Fusion
from traffic_retrieval.retrieval.gallery import encode_gallery
from traffic_retrieval.retrieval.pipeline import QuerySettings, rank_queries
from traffic_retrieval.synthetic.generate import written_by_synth

from study_run import StudyRun, official

ORACLE_WRONG = np.log(1e-3)  # the oracle's log-probability of every value but the true one


def attribute_term(table: np.ndarray, targets: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Summed log-probabilities of each query's stated values for every gallery image (queries x images)."""
    out = np.zeros((len(targets), len(table)), np.float32)
    for g, offset in enumerate(offsets[:-1]):
        asked = targets[:, g] != MISSING
        if asked.any():
            out[asked] += table[:, offset + targets[asked, g]].T
    return out


def with_oracle(table: np.ndarray, truth: np.ndarray, offsets: np.ndarray, g: int) -> np.ndarray:
    """The heads' table with group ``g`` replaced by the truth, where the gallery image has that group."""
    out, (a, b) = table.copy(), (offsets[g], offsets[g + 1])
    has = truth[:, g] != MISSING
    exact = np.full((int(has.sum()), b - a), ORACLE_WRONG, np.float32)
    exact[np.arange(len(exact)), truth[has, g]] = 0.0
    out[np.flatnonzero(has), a:b] = exact
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a reproduce run folder with attribute heads")
    a = ap.parse_args()
    run = StudyRun.open(a.run)
    data, vocab, loaded, queries, paths, heads = run.data, run.vocab, run.loaded, run.queries, run.paths, run.heads()
    gallery = encode_gallery(loaded, paths, EncodeSettings(cache_dir=Path("data/cache"), progress=False), flip_tta=True)
    _, relevant, kinds = read_ground_truth(data / "test" / "test_ground_truth.txt", vocab)
    truth = run.truth(heads.groups)

    routed = route(queries, vocab)
    query_emb = encode_texts(loaded, [enhance(q, k, DEFAULT_VEHICLE_PROMPT) for q, k in zip(queries, routed)])
    targets = np.array([query_targets(q, k, vocab, heads.groups) for q, k in zip(queries, routed)], np.int64)
    emb = np.asarray(gallery.embeddings)
    logits = loaded.logit_scale * (query_emb @ emb.T)
    table = heads.log_probs(emb, gallery.mean())

    def fused(attribute: np.ndarray) -> dict:
        top = np.argsort(-(logits + attribute), axis=1, kind="stable")[:, :10]
        return official(score([[gallery.names[j] for j in row] for row in top], relevant, kinds))

    rows = {"the heads as fitted": fused(attribute_term(table, targets, heads.offsets))}
    # the same ranking through the query pipeline, so that the matrices above are known to be its own
    pipeline = rank_queries(loaded, gallery, queries, vocab, QuerySettings(
        flip_tta=True, fusion=Fusion(heads, 1.0, candidates=len(paths), adapt=True)))
    rows["the query pipeline (check)"] = official(score(pipeline.top_names(), relevant, kinds))
    for g, group in enumerate(heads.groups):
        if group.name != "kind":
            rows[f"oracle {group.name}"] = fused(attribute_term(with_oracle(table, truth, heads.offsets, g),
                                                                   targets, heads.offsets))
    accuracy = heads.accuracy(emb, truth, gallery.mean())

    print(f"Headroom on {data} (seed {written_by_synth(data)['seed']}), run {a.run}: official mAP@10 on its test "
          "split, fusion weight 1, gallery centring, flip TTA, no re-ranking; one group at a time read by an oracle.\n")
    base = rows["the heads as fitted"]
    print("| ranking | all | vehicle | pedestrian | gain (all) | heads' accuracy on the gallery |\n|---|---|---|---|---|---|")
    for name, r in rows.items():
        group = name.removeprefix("oracle ")
        gain = f"{r['all'] - base['all']:+.4f}" if name.startswith("oracle") else ""
        acc = f"{accuracy[group]:.3f}" if group in accuracy else ""
        print(f"| {name} | {r['all']:.4f} | {r['vehicle']:.4f} | {r['pedestrian']:.4f} | {gain} | {acc} |")
    print("\n" + json.dumps({"rows": rows, "heads_accuracy": accuracy}))


if __name__ == "__main__":
    main()
