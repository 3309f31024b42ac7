"""Gallery adaptation variants on a selection run: what the unlabelled test gallery and the query set
can teach the ranking, each variant scored on the run's test split (seed 1, never the reported one).

The fused score of the query pipeline is computed for every query and every gallery image at once
(similarity plus the attribute heads' log-likelihood, ``fusion.attribute_scores`` over all images),
then re-weighted by what the other queries and images say:

- ``dual softmax``: each image's scores normalised over the distinct queries (a softmax over the query
  bank, as dual-softmax and query-bank normalisation do in text-video retrieval): an image that every
  query likes is worth less to each;
- ``sinkhorn``: that normalisation iterated over both axes (an entropic transport plan between the
  distinct queries, weighted by how often each is asked, and the images);
- ``self-training``: the heads fitted again on the training views plus the gallery, each gallery image
  labelled with the attributes of the queries the transport plan gives it, where it is confident;
- ``pipeline``: the shipped query pipeline with the balance, the seed's re-ranking, and both;
- ``coral``: the gallery's embeddings whitened and re-coloured with the training views' covariance
  before the heads read them (beyond the mean that gallery centring already removes).

    .venv/bin/python benchmarks/gallery_adaptation.py --run log/dev1-p4 | tee docs/shift/gallery-adaptation-seed1.txt
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from traffic_retrieval.core.attribute_groups import MISSING, query_targets
from traffic_retrieval.core.evaluation import evaluate
from traffic_retrieval.core.routing import DEFAULT_VEHICLE_PROMPT, enhance, route
from traffic_retrieval.core.submission import write_submission
from traffic_retrieval.retrieval.encode import EncodeSettings, encode_texts
from traffic_retrieval.retrieval.balance import Balance
from traffic_retrieval.retrieval.fusion import AttributeHeads, Fusion, HeadSettings, attribute_matrix, centred
from traffic_retrieval.retrieval.gallery import encode_gallery
from traffic_retrieval.retrieval.pipeline import QuerySettings, rank_queries
from traffic_retrieval.retrieval.rerank import RerankSettings
from traffic_retrieval.training.heads import HeadData, training_views

from study_run import StudyRun, official


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def sinkhorn(scores: np.ndarray, weights: np.ndarray, temperature: float, iterations: int) -> np.ndarray:
    """Log of the entropic transport plan between distinct queries (rows, mass ``weights``) and images
    (columns, equal mass), from ``scores`` / ``temperature``."""
    log_k = scores / temperature
    log_r, log_c = np.log(weights / weights.sum()), np.full(scores.shape[1], -np.log(scores.shape[1]))
    u, v = np.zeros(scores.shape[0]), np.zeros(scores.shape[1])
    for _ in range(iterations):
        u = log_r - np.logaddexp.reduce(log_k + v[None, :], axis=1)
        v = log_c - np.logaddexp.reduce(log_k + u[:, None], axis=0)
    return log_k + u[:, None] + v[None, :]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--weight", type=float, default=1.0, help="fusion weight (the notebook's)")
    ap.add_argument("--only", nargs="*", default=None, help="families of variants to run (default all): pipeline, dual, "
                                                            "sinkhorn, weights, coral, self, gallery")
    a = ap.parse_args()
    run = StudyRun.open(a.run)
    loaded, queries, vocab = run.loaded, run.queries, run.vocab
    encode = EncodeSettings(cache_dir=Path("data/cache"), progress=False)
    gallery = encode_gallery(loaded, run.paths, encode, flip_tta=True)
    rows = np.asarray(gallery.embeddings, np.float32)
    heads = run.heads()
    kinds = route(queries, vocab)
    texts = [enhance(q, k, DEFAULT_VEHICLE_PROMPT) for q, k in zip(queries, kinds)]
    q_emb = encode_texts(loaded, texts)
    distinct, inverse, counts = np.unique(np.array(texts), return_inverse=True, return_counts=True)
    first = {t: i for i, t in reversed(list(enumerate(texts)))}
    d_emb = q_emb[[first[t] for t in distinct]]
    targets = np.array([query_targets(queries[first[t]], kinds[first[t]], vocab, heads.groups) for t in distinct])
    scale = loaded.logit_scale
    sim = d_emb @ rows.T
    truth = run.truth(heads.groups)
    table_rows = {}

    def wanted(family: str) -> bool:
        return a.only is None or family in a.only

    def score(name: str, s_distinct: np.ndarray) -> None:
        top = np.argsort(-s_distinct, axis=1, kind="stable")[:, :10]
        score_names(name, [[gallery.names[j] for j in top[i]] for i in inverse])

    def score_names(name: str, names: list[list[str]]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "s.json"
            write_submission(out, list(zip(queries, names)))
            table_rows[name] = official(evaluate(out, run.data / "test" / "test_ground_truth.txt"))
        r = table_rows[name]
        print(f"| {name} | {r['all']:.4f} | {r['vehicle']:.4f} | {r['pedestrian']:.4f} |", flush=True)

    print(f"Gallery adaptation on {run.data}, run {a.run}: official mAP@10 on its test split; {len(queries)} "
          f"queries ({len(distinct)} distinct), {len(rows)} images, flip TTA, fusion weight {a.weight:g}, no "
          f"re-ranking.\n\n| variant | all | vehicle | pedestrian |\n|---|---|---|---|")
    centre = gallery.mean()
    fused = sim + a.weight / scale * attribute_matrix(heads, targets, rows, centre)
    score("fused (the pipeline's first ranking)", fused)
    # the shipped query pipeline (retrieval/pipeline.py): the balance against the seed's re-ranking, and both
    fusion = Fusion(heads, a.weight)
    for name, rerank, balance in (("pipeline: fused + re-ranking (mean)", RerankSettings(), None),
                                  ("pipeline: fused + balance", None, Balance()),
                                  ("pipeline: fused + balance + re-ranking (mean)", RerankSettings(), Balance())) \
            if wanted("pipeline") else ():
        query = QuerySettings(vehicle_prompt=DEFAULT_VEHICLE_PROMPT, flip_tta=True, fusion=fusion, rerank=rerank,
                              balance=balance)
        score_names(name, rank_queries(loaded, gallery, queries, vocab, query).top_names())
    for t in (0.01, 0.02, 0.05) if wanted("dual") else ():
        for lam in (0.5, 1.0):
            score(f"dual softmax T {t:g}, weight {lam:g}", fused + lam * t * log_softmax(fused / t, axis=0))
    for t in (0.01, 0.02, 0.05, 0.1, 0.2) if wanted("sinkhorn") else ():
        for iterations in (1, 5, 20, 100):
            score(f"sinkhorn T {t:g}, {iterations} iterations", sinkhorn(fused, counts.astype(float), t, iterations))
    # a fusion weight per kind under the balance (the attribute term against the similarity: a temperature each)
    attr = attribute_matrix(heads, targets, rows, centre)
    d_kind = np.array([kinds[first[t]] for t in distinct])
    for wv in (0.5, 1.0, 2.0) if wanted("weights") else ():
        for wp in (0.5, 1.0, 2.0, 4.0):
            w = np.where(d_kind == "vehicle", wv, wp)[:, None]
            score(f"sinkhorn T 0.1, fusion weight {wv:g} for vehicles, {wp:g} for pedestrians",
                  sinkhorn(sim + w / scale * attr, counts.astype(float), 0.1, 20))
    # per kind: the vehicle queries balanced against the wide images, the pedestrian ones against the tall
    wide = np.asarray(gallery.kinds == "vehicle")
    d_kinds = np.array([kinds[first[t]] for t in distinct])
    for t in (0.05, 0.1) if wanted("sinkhorn") else ():
        balanced = np.full_like(fused, -np.inf)
        for kind, shape in (("vehicle", wide), ("pedestrian", ~wide)):
            r = np.flatnonzero(d_kinds == kind)
            balanced[np.ix_(r, np.flatnonzero(shape))] = sinkhorn(fused[np.ix_(r, np.flatnonzero(shape))],
                                                                   counts[r].astype(float), t, 20)
        score(f"sinkhorn per kind T {t:g}, 20 iterations", balanced)

    # CORAL: the gallery re-coloured with the training views' covariance before the heads read it
    views, view_targets, _ = training_views(loaded, run.data, vocab, encode, HeadData(degraded=1))
    def coloured(x: np.ndarray, mu: np.ndarray, ref: np.ndarray) -> np.ndarray:
        xc = x - mu
        cs = np.cov(xc, rowvar=False) + 1e-3 * np.eye(x.shape[1])
        ct = np.cov(ref - ref.mean(0), rowvar=False) + 1e-3 * np.eye(x.shape[1])
        ws, vs = np.linalg.eigh(cs)
        wt, vt = np.linalg.eigh(ct)
        whiten = vs @ np.diag(ws ** -0.5) @ vs.T
        colour = vt @ np.diag(wt ** 0.5) @ vt.T
        return (xc @ whiten @ colour + ref.mean(0)).astype(np.float32)
    if wanted("coral"):
        recoloured = coloured(centred(rows, centre), centred(rows, centre).mean(0), centred(views, heads.centre))
        coral = sim + a.weight / scale * attribute_matrix(heads, targets, recoloured, np.zeros(rows.shape[1], np.float32))
        score("coral (heads read the re-coloured gallery)", coral)
    acc = {"fitted": heads.accuracy(rows, truth, centre)}

    # self-training: each gallery image labelled, group by group, with the values the transport plan's
    # queries agree on (where their share reaches ``confident``), the heads fitted again on the training
    # views and those images (repeated so that the gallery weighs ``repeat`` times its size), and again
    def plan_labels(s_distinct: np.ndarray, t: float, confident: float) -> np.ndarray:
        plan = np.exp(sinkhorn(s_distinct, counts.astype(float), t, 20))
        plan = plan / plan.sum(0, keepdims=True)  # each image's distribution over the distinct queries
        labels = np.full((plan.shape[1], len(heads.groups)), MISSING, np.int64)
        for g, group in enumerate(heads.groups):
            share = np.zeros((len(group.values), plan.shape[1]))
            stated = targets[:, g] != MISSING
            np.add.at(share, targets[stated, g], plan[stated])
            best, top = share.argmax(0), share.max(0)
            labels[top >= confident, g] = best[top >= confident]
        return labels

    views_c = centred(views, heads.centre)
    gallery_c = centred(rows, centre)
    for t, confident, repeat, rounds in ((0.1, 0.7, 1, 1), (0.1, 0.7, 4, 1), (0.1, 0.7, 4, 3), (0.1, 0.9, 4, 3),
                                         (0.1, 0.5, 4, 3), (0.05, 0.7, 4, 3)) if wanted("self") else ():
        current, s_self = heads, fused
        for _ in range(rounds):
            pseudo = plan_labels(s_self, t, confident)
            labelled = (pseudo[:, 1:] != MISSING).any(1)
            times = max(1, round(repeat * len(views) / max(int(labelled.sum()), 1) / 10)) if repeat > 1 else 1
            x = np.concatenate([views_c, np.repeat(gallery_c[labelled], times, axis=0)])
            y = np.concatenate([view_targets, np.repeat(pseudo[labelled], times, axis=0)])
            current = AttributeHeads(heads.groups, heads.dim, heads.hidden, heads.meta).fit(x, y, HeadSettings(centred=False))
            s_self = sim + a.weight / scale * attribute_matrix(current, targets, gallery_c, None)
        name = f"self-training: T {t:g}, share >= {confident:g}, gallery x{times} ({int(labelled.sum())} images), {rounds} round(s)"
        score(name, s_self)
        score(name + " + sinkhorn T 0.1", sinkhorn(s_self, counts.astype(float), 0.1, 20))
        acc[name] = current.accuracy(gallery_c, truth)
    # the same from the fitted heads, on the gallery alone (what a query-time adaptation can do: the
    # training views are not at hand there)
    for confident, epochs, lr, rounds in ((0.7, 100, 0.003, 1), (0.7, 100, 0.003, 3), (0.7, 300, 0.003, 3),
                                          (0.7, 100, 0.01, 3), (0.9, 100, 0.003, 3), (0.5, 100, 0.003, 3)) \
            if wanted("gallery") else ():
        current, s_self = heads, fused
        for _ in range(rounds):
            pseudo = plan_labels(s_self, 0.1, confident)
            current = heads.adapted(rows, pseudo, centre, epochs, lr)
            s_self = sim + a.weight / scale * attribute_matrix(current, targets, rows, None)
        name = f"gallery-only self-training from the heads: share >= {confident:g}, {epochs} steps at lr {lr:g}, {rounds} round(s)"
        score(name, s_self)
        score(name + " + sinkhorn T 0.1", sinkhorn(s_self, counts.astype(float), 0.1, 20))
        acc[name] = current.accuracy(rows, truth)
    print("\nHeads' accuracy on the gallery:\n\n| group | " + " | ".join(acc) + " |\n|---|" + "---|" * len(acc))
    for g in acc["fitted"]:
        print(f"| {g} | " + " | ".join(f"{acc[k][g]:.3f}" for k in acc) + " |")
    print("\n" + json.dumps({"rows": table_rows, "accuracy": acc}))


if __name__ == "__main__":
    main()
