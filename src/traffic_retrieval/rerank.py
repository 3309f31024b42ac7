"""Adaption re-ranking (A3R's second key idea) and horizontal-flip test-time augmentation.

After the first ranking, a query is adapted towards what its best candidates have in common
(their similarity-weighted consensus) and its top-N candidates are scored again. Consensus
methods: ``pca`` (the seed: first principal component of the similarity-weighted features),
``mean`` (weighted mean), ``aqe`` (alpha query expansion) and ``kreciprocal`` (candidates whose
own nearest queries include this query are promoted). Pure numpy on embeddings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

Method = Literal["pca", "mean", "aqe", "kreciprocal"]
METHODS: tuple[str, ...] = ("pca", "mean", "aqe", "kreciprocal")


@dataclass(frozen=True)
class RerankSettings:
    method: Method = "mean"
    top_k: int = 3  # candidates that form the consensus (3 measured best: benchmarks/rerank_methods.py)
    weight: float = 0.5  # how far the query moves towards the consensus
    alpha: float = 3.0  # aqe: similarity exponent
    temperature: float = 0.05  # softmax temperature of the consensus weights


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def tta_gallery(gallery: np.ndarray, flipped: Optional[np.ndarray]) -> np.ndarray:
    """Gallery embeddings averaged with their horizontal flips (re-normalised)."""
    return gallery if flipped is None else _normalise(gallery + flipped)


def _consensus(query: np.ndarray, cands: np.ndarray, sims: np.ndarray, s: RerankSettings) -> np.ndarray:
    """One adapted direction from the top-k candidates of one query (k x d)."""
    w = np.exp((sims - sims.max()) / s.temperature)
    w = w / w.sum()
    if s.method == "mean":
        return _normalise(w @ cands)
    if s.method == "aqe":
        return _normalise(np.clip(sims, 0, None) ** s.alpha @ cands)
    # pca: the first principal direction of the weighted features, pointing along the query
    _, _, vt = np.linalg.svd(np.sqrt(w)[:, None] * cands, full_matrices=False)
    direction = vt[0]
    return direction if direction @ query >= 0 else -direction


def adapt_queries(query_emb: np.ndarray, gallery: np.ndarray, candidates: np.ndarray, s: RerankSettings) -> np.ndarray:
    """Queries moved towards the consensus of their top-k first-ranked candidates."""
    adapted = np.empty_like(query_emb)
    for i, (q, idx) in enumerate(zip(query_emb, candidates)):
        top = gallery[idx[: s.top_k]]
        adapted[i] = _normalise(q + s.weight * _consensus(q, top, top @ q, s))
    return adapted


def kreciprocal_scores(query_emb: np.ndarray, gallery: np.ndarray, candidates: np.ndarray, s: RerankSettings,
                       block: int = 4096) -> np.ndarray:
    """Similarity plus a bonus for candidates that rank this query among their own top-k queries."""
    sims = np.take_along_axis(query_emb @ gallery.T, candidates, axis=1) if len(gallery) <= block else np.stack(
        [gallery[c] @ q for q, c in zip(query_emb, candidates)])
    unique = np.unique(candidates)
    rank_of = np.empty((len(unique), len(query_emb)), np.int32)
    for start in range(0, len(unique), block):
        img_to_query = gallery[unique[start:start + block]] @ query_emb.T  # images x queries
        order = np.argsort(-img_to_query, axis=1)
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(order.shape[1])[None, :], axis=1)
        rank_of[start:start + block] = ranks
    position = np.searchsorted(unique, candidates)
    query_rank = rank_of[position, np.arange(len(query_emb))[:, None]]
    return sims + s.weight * (query_rank < s.top_k)


def rerank(query_emb: np.ndarray, gallery: np.ndarray, candidates: np.ndarray, settings: RerankSettings = RerankSettings(),
           k: int = 10) -> tuple[np.ndarray, float]:
    """Re-ranked top-k gallery indices (n x k) among each query's first candidates, and the seconds it took.

    ``gallery`` is what the first ranking used (with flip TTA already applied, see tta_gallery)."""
    start = time.perf_counter()
    if settings.method == "kreciprocal":
        scores = kreciprocal_scores(query_emb, gallery, candidates, settings)
    else:
        adapted = adapt_queries(query_emb, gallery, candidates, settings)
        scores = np.concatenate([np.einsum("nd,nkd->nk", adapted[b:b + 1024], gallery[candidates[b:b + 1024]])
                                 for b in range(0, len(adapted), 1024)])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(candidates, order, axis=1), time.perf_counter() - start


def add_parser(subparsers) -> None:
    from pathlib import Path

    from .infer import add_model_arguments, optional_path

    p = subparsers.add_parser(
        "rerank",
        help="adaption re-ranking of a top-N submission",
        description=(
            "Reads a submission with N names a query (infer --topk 50) and the gallery it ranked; encodes the "
            "queries again (routing and prompt as in infer) and takes the gallery embeddings from the cache. "
            "Writes OUT, the re-ranked top-10 submission. The same is available as infer --rerank."
        ),
    )
    p.add_argument("--submission-topn", type=Path, required=True, help="first-ranking submission with N names a query")
    p.add_argument("--data", type=Path, default=Path("data/datasets"))
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--method", choices=METHODS, default=RerankSettings.method)
    p.add_argument("--top-k", type=int, default=RerankSettings.top_k, help="candidates forming the consensus")
    p.add_argument("--weight", type=float, default=RerankSettings.weight, help="step towards the consensus")
    p.add_argument("--flip-tta", action="store_true", help="average gallery embeddings with their horizontal flips")
    p.add_argument("--vehicle-prompt", default=None, help="as given to infer (default: the seed's)")
    p.add_argument("--cache-dir", type=optional_path, default=Path("data/cache"), help="embedding cache ('' disables)")
    p.add_argument("--vocab", type=Path, default=None)
    add_model_arguments(p)
    p.set_defaults(func=_run_from_submission)


def _run_from_submission(a) -> int:
    from .encode import encode_texts, gallery_embeddings
    from .infer import find_vocabulary, split_queries_and_gallery
    from .models import load_model
    from .routing import DEFAULT_VEHICLE_PROMPT, enhance, route
    from .submission import read_submission, validate_submission, write_submission

    loaded = load_model(a.model, a.pretrained, a.device or "cpu", "fp32", a.square_pad)
    queries, gallery = split_queries_and_gallery(a.data, a.split)
    first = read_submission(a.submission_topn)
    n = len(first[0][1]) if first else 0
    validate_submission(first, queries, {p.name for p in gallery}, k=n)
    encode = dict(cache_dir=a.cache_dir, square_pad=a.square_pad, batch_size=a.batch_size, workers=a.workers)
    gallery_emb, _ = gallery_embeddings(loaded, gallery, flip=False, **encode)
    if a.flip_tta:
        gallery_emb = tta_gallery(gallery_emb, gallery_embeddings(loaded, gallery, flip=True, **encode)[0])
    prompt = DEFAULT_VEHICLE_PROMPT if a.vehicle_prompt is None else a.vehicle_prompt
    kinds = route(queries, find_vocabulary(a.data, a.vocab))
    query_emb = encode_texts(loaded, [enhance(q, k, prompt) for q, k in zip(queries, kinds)])
    position = {p.name: i for i, p in enumerate(gallery)}
    candidates = np.array([[position[name] for name in names] for _, names in first])
    settings = RerankSettings(method=a.method, top_k=a.top_k, weight=a.weight)
    indices, seconds = rerank(query_emb, gallery_emb, candidates, settings)
    write_submission(a.out, [(q, [gallery[j].name for j in row]) for q, row in zip(queries, indices)])
    print(f"re-ranked {len(queries)} queries ({n} candidates each) in {seconds:.3f} s -> {a.out}")
    return 0
