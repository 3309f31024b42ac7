"""mAP@10 as the challenge scores it, plus a stricter normalisation and Recall@k.

Two normalisations of the same precision sum over the top ``k`` (h = running hit count,
summing h/rank at each rank that is a hit):

- *official* (the organisers' rule, the headline figure): divide by the number of hits in
  the top k. It does not punish relevant images that were never retrieved: one hit at rank
  1 scores 1.0 however many relevant images the gallery holds.
- *strict*: divide by min(R, k), R = relevant images in the gallery (the textbook AP@k).

An image named twice in a ranking counts once, at its first rank: a repeat is never a hit.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

K = 10
RECALL_KS = (1, 5, 10)
METRIC_KEYS = ("map_official", "map_strict", *(f"recall@{k}" for k in RECALL_KS))


def _hit_ranks(ranking: Sequence[str], relevant: set[str], k: int) -> list[int]:
    """1-based ranks within the top k of the first occurrence of each relevant image."""
    seen: set[str] = set()
    ranks = []
    for rank, name in enumerate(ranking[:k], start=1):
        if name in relevant and name not in seen:
            ranks.append(rank)
        seen.add(name)
    return ranks


def _precision_sum(hit_ranks: list[int]) -> float:
    return sum(h / rank for h, rank in enumerate(hit_ranks, start=1))


def ap_official(ranking: Sequence[str], relevant: set[str], k: int = K) -> float:
    """The organisers' AP@k: precision sum over the hits, divided by the number of hits."""
    ranks = _hit_ranks(ranking, relevant, k)
    return _precision_sum(ranks) / len(ranks) if ranks else 0.0


def ap_strict(ranking: Sequence[str], relevant: set[str], k: int = K) -> float:
    """Textbook AP@k: the same precision sum divided by min(R, k), R = len(relevant)."""
    ranks = _hit_ranks(ranking, relevant, k)
    return _precision_sum(ranks) / min(len(relevant), k) if ranks else 0.0


def hit_at(ranking: Sequence[str], relevant: set[str], k: int) -> float:
    """Recall@k in the usual retrieval sense: 1.0 when any relevant image is in the top k.

    (Not the fraction of relevant images retrieved: a query has one answer to find.)
    """
    return 1.0 if any(name in relevant for name in ranking[:k]) else 0.0


def _per_query(rankings: Sequence[Sequence[str]], relevant: Sequence[set[str]], k: int) -> np.ndarray:
    """Rows = queries, columns = METRIC_KEYS."""
    return np.array(
        [
            [ap_official(r, rel, k), ap_strict(r, rel, k), *(hit_at(r, rel, n) for n in RECALL_KS)]
            for r, rel in zip(rankings, relevant)
        ],
        dtype=np.float64,
    )


def _summary(rows: np.ndarray) -> dict:
    return {**dict(zip(METRIC_KEYS, (float(v) for v in rows.mean(axis=0)))), "queries": len(rows)}


def score(
    rankings: Sequence[Sequence[str]],
    relevant: Sequence[set[str]],
    kinds: Sequence[str] | None = None,
    k: int = K,
    per_query: bool = False,
) -> dict:
    """Means over queries of both AP@k normalisations and Recall@1/5/10.

    Returns ``{"map_official", "map_strict", "recall@1", "recall@5", "recall@10", "queries",
    "per_kind"}``; ``per_kind`` maps each kind present in ``kinds`` (e.g. "vehicle",
    "pedestrian") to the same keys over its queries, and is empty when ``kinds`` is None. With
    ``per_query``, ``"per_query_official"`` lists each query's official AP too (for paired resampling).
    """
    if len(rankings) != len(relevant):
        raise ValueError(f"{len(rankings)} rankings but {len(relevant)} relevant sets")
    if kinds is not None and len(kinds) != len(rankings):
        raise ValueError(f"{len(rankings)} rankings but {len(kinds)} kinds")
    if not rankings:
        raise ValueError("no queries to score")
    rows = _per_query(rankings, relevant, k)
    per_kind = {}
    if kinds is not None:
        kind_array = np.asarray(kinds)
        per_kind = {kind: _summary(rows[kind_array == kind]) for kind in sorted(set(kinds))}
    extra = {"per_query_official": [float(v) for v in rows[:, 0]]} if per_query else {}
    return {**_summary(rows), "per_kind": per_kind, **extra}
