"""Adaption re-ranking (A3R's second key idea) and horizontal-flip test-time augmentation.

After the first ranking, a query is adapted towards what its best candidates have in common
(their similarity-weighted consensus) and its top-N candidates are scored again. Consensus
methods: ``pca`` (the seed: first principal component of the similarity-weighted features),
``mean`` (weighted mean), ``aqe`` (alpha query expansion) and ``kreciprocal`` (candidates whose
own nearest queries include this query are promoted). Pure numpy on embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

Method = Literal["pca", "mean", "aqe", "kreciprocal"]
METHODS: tuple[str, ...] = ("pca", "mean", "aqe", "kreciprocal")
CANDIDATES = 50  # first-ranked candidates that re-ranking reorders, by default


@dataclass(frozen=True)
class RerankSettings:
    method: Method = "mean"
    top_k: int = 3  # candidates that form the consensus (the reproduce run's: docs/shift/select-seed1-al4.txt)
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
           k: int = 10, prior: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Re-ranked top-k gallery indices (n x k) among each query's first candidates, and their scores.

    ``gallery`` is what the first ranking used (with flip TTA already applied, see tta_gallery); only
    the candidates' rows are read, so a memory-mapped array serves as well as one in memory.
    ``prior`` (n x candidates, in the similarity's units) is added to every score, before and after
    the adaptation: attribute fusion's term, kept through re-ranking. The candidates come best first
    by similarity plus prior, so the consensus is taken over the fused ranking's top."""
    if settings.method == "kreciprocal":
        scores = kreciprocal_scores(query_emb, gallery, candidates, settings)
    else:
        adapted = adapt_queries(query_emb, gallery, candidates, settings)
        scores = np.concatenate([np.einsum("nd,nkd->nk", adapted[b:b + 1024], gallery[candidates[b:b + 1024]])
                                 for b in range(0, len(adapted), 1024)])
    if prior is not None:
        scores = scores + prior
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(candidates, order, axis=1), np.take_along_axis(scores, order, axis=1)
