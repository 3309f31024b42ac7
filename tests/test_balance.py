"""The gallery balance: a per-image bias from the transport plan between a query bank and the gallery."""

from __future__ import annotations

import numpy as np
import pytest

from traffic_retrieval.retrieval.balance import Balance, image_bias
from traffic_retrieval.retrieval.encode import EncodeSettings
from traffic_retrieval.retrieval.gallery import Gallery
from traffic_retrieval.retrieval.pipeline import QuerySettings, bank_scores, rank_queries


def _plan(scores, weights, t, iterations):
    log_k = scores / t
    u, v = np.zeros(len(scores)), np.zeros(scores.shape[1])
    for _ in range(iterations):
        u = np.log(weights / weights.sum()) - np.logaddexp.reduce(log_k + v, axis=1)
        v = -np.log(scores.shape[1]) - np.logaddexp.reduce(log_k + u[:, None], axis=0)
    return log_k + u[:, None] + v


def test_a_hub_that_every_query_prefers_is_put_back_in_its_place():
    n = 6
    scores = np.eye(n) * 0.3 + 0.1  # query i matches image i ...
    scores[:, 0] = 0.5  # ... but image 0 is every query's first (a hub)
    scores[0, 0] = 0.6
    assert (scores.argmax(1) == 0).all()
    bias = image_bias(scores, np.ones(n), np.ones(n, bool), Balance(temperature=0.1))
    assert ((scores + bias).argmax(1) == np.arange(n)).all()


def test_ranking_with_the_bias_is_ranking_by_the_plan(rng=np.random.default_rng(0)):
    scores = rng.normal(0, 0.1, (30, 40))
    weights = rng.integers(1, 4, 30).astype(float)
    bias = image_bias(scores, weights, np.ones(40, bool), Balance(0.05, 30))
    plan = _plan(scores, weights, 0.05, 30)
    assert (np.argsort(-(scores + bias), 1)[:, :10] == np.argsort(-plan, 1)[:, :10]).all()
    assert not (np.argsort(-scores, 1)[:, :10] == np.argsort(-plan, 1)[:, :10]).all()  # the test can tell


def test_unreadable_images_get_no_mass_and_never_rank():
    scores = np.random.default_rng(1).normal(0, 0.1, (5, 8))
    ok = np.array([True] * 6 + [False] * 2)
    bias = image_bias(scores, np.ones(5), ok)
    assert np.isneginf(bias[~ok]).all() and np.isfinite(bias[ok]).all() and bias[ok].max() == 0.0
    assert np.isneginf(image_bias(scores, np.ones(5), np.zeros(8, bool))).all()


def test_balance_settings_are_checked():
    with pytest.raises(ValueError):
        Balance(temperature=0)
    with pytest.raises(ValueError):
        Balance(iterations=0)


def test_the_pipeline_ranks_as_the_full_fused_matrix_plus_the_bias(drawn_dataset):
    from traffic_retrieval.core.labels import read_queries
    from traffic_retrieval.core.layout import find_vocabulary, gallery_images
    from traffic_retrieval.retrieval.gallery import encode_gallery
    from traffic_retrieval.retrieval.models import ModelSettings, load_model

    data, checkpoint = drawn_dataset("balance", 6, train=20, val=0, test=80)
    loaded = load_model(ModelSettings(None, str(checkpoint)))
    gallery = encode_gallery(loaded, gallery_images(data / "test" / "test_images"), EncodeSettings(workers=0, progress=False))
    queries, vocab = read_queries(data / "test" / "test_text.txt"), find_vocabulary(data)
    settings = QuerySettings(balance=Balance())
    ranked = rank_queries(loaded, gallery, queries, vocab, settings)
    scores, counts = bank_scores(loaded, gallery, queries, vocab, settings)
    assert counts.sum() == len(queries) and scores.shape == (len(counts), len(gallery))
    bias = image_bias(scores, counts, gallery.ok)
    plain = rank_queries(loaded, gallery, queries, vocab, QuerySettings())
    expected = rank_queries(loaded, Gallery(gallery.names, gallery.embeddings, gallery.ok, bias=bias), queries, vocab,
                            settings)
    assert (ranked.indices == expected.indices).all()
    assert not (ranked.indices == plain.indices).all()
