"""Adaption re-ranking on embeddings where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from traffic_retrieval.core.metrics import score
from traffic_retrieval.retrieval.rank import topk_blocked
from traffic_retrieval.retrieval.rerank import METHODS, RerankSettings, rerank, tta_gallery


def _normalise(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def clustered(seed: int = 0, classes: int = 40, per_class: int = 8, dim: int = 32, query_noise: float = 1.0):
    """Gallery images tight around class centres; queries far noisier (a text/image modality gap)."""
    rng = np.random.default_rng(seed)
    centres = _normalise(rng.normal(size=(classes, dim)))
    labels = np.repeat(np.arange(classes), per_class)
    gallery = _normalise(centres[labels] + 0.25 * rng.normal(size=(len(labels), dim)) / np.sqrt(dim) * 4)
    queries = _normalise(centres + query_noise * rng.normal(size=(classes, dim)) / np.sqrt(dim) * 4)
    relevant = [set(np.flatnonzero(labels == c).astype(str)) for c in range(classes)]
    return queries, gallery, relevant


def _map(indices, relevant):
    return score([[str(j) for j in row] for row in indices], relevant)["map_strict"]


@pytest.mark.parametrize("method", ["mean", "pca", "aqe"])
def test_adaption_improves_noisy_queries(method):
    queries, gallery, relevant = clustered()
    _, first = topk_blocked(queries, gallery, 50)
    reranked, scores = rerank(queries, gallery, first, RerankSettings(method=method, top_k=5, weight=1.0))
    assert reranked.shape == scores.shape == (len(queries), 10)
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first
    assert _map(reranked, relevant) > _map(first[:, :10], relevant) + 0.02


def test_reranking_only_reorders_first_candidates():
    queries, gallery, _ = clustered(seed=1)
    _, first = topk_blocked(queries, gallery, 20)
    for method in METHODS:
        reranked, _ = rerank(queries, gallery, first, RerankSettings(method=method))
        for row, cands in zip(reranked, first):
            assert set(row) <= set(cands) and len(set(row)) == 10


def test_zero_weight_keeps_the_first_ranking():
    queries, gallery, _ = clustered(seed=2)
    _, first = topk_blocked(queries, gallery, 30)
    for method in METHODS:
        reranked, _ = rerank(queries, gallery, first, RerankSettings(method=method, weight=0.0))
        np.testing.assert_array_equal(reranked, first[:, :10])


def test_kreciprocal_promotes_mutual_neighbours():
    # Query 0 sits between images 0 and 1; image 1 prefers another query, image 0 prefers query 0.
    gallery = _normalise(np.array([[1.0, 0.0, 0.0], [0.9, 0.44, 0.0], [0.0, 0.0, 1.0]]))
    queries = _normalise(np.array([[0.9, 0.3, 0.0], [0.9, 0.44, 0.0], [0.0, 0.1, 1.0]]))
    first = np.array([[1, 0, 2], [1, 0, 2], [2, 1, 0]])
    reranked, _ = rerank(queries, gallery, first, RerankSettings(method="kreciprocal", top_k=1, weight=1.0), k=3)
    assert reranked[0, 0] == 0


def test_flip_tta_averages_and_renormalises():
    rng = np.random.default_rng(0)
    g, f = _normalise(rng.normal(size=(5, 8))), _normalise(rng.normal(size=(5, 8)))
    combined = tta_gallery(g, f)
    np.testing.assert_allclose(np.linalg.norm(combined, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(combined, _normalise(g + f))
    assert tta_gallery(g, None) is g
