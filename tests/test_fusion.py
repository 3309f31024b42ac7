"""Attribute fusion: groups from labels and queries, heads that learn them, fused scores, re-ranking with
the attribute term, and the pipeline with fusion against a brute-force ranking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from strategies import pedestrians
from traffic_retrieval.core.attribute_groups import (MISSING, attribute_groups, encode_subject, label_targets,
                                                     query_targets)
from traffic_retrieval.core.attributes import Vehicle
from traffic_retrieval.core.captions import pedestrian_caption, vehicle_caption
from traffic_retrieval.core.labels import Label
from traffic_retrieval.core.vocab import packaged_vocabulary
from traffic_retrieval.retrieval.fusion import AttributeHeads, HeadSettings, attribute_scores
from traffic_retrieval.retrieval.rerank import RerankSettings, rerank

VOCAB = packaged_vocabulary()
GROUPS = attribute_groups(VOCAB)
NAMES = [g.name for g in GROUPS]


def test_a_partial_vehicle_label_states_only_its_parts():
    t = dict(zip(NAMES, label_targets(Label("a.jpg", "white Audi", "This is a white Audi"), VOCAB, GROUPS)))
    assert t["kind"] == 0 and t["colour"] == VOCAB.colours.index("white") and t["brand"] == VOCAB.brands.index("Audi")
    assert t["type"] == MISSING and t["gender"] == MISSING
    t = dict(zip(NAMES, label_targets(Label("b.jpg", "Truck", "A Truck"), VOCAB, GROUPS)))
    assert (t["colour"], t["brand"], t["type"]) == (MISSING, MISSING, VOCAB.types.index("Truck"))


def test_a_complete_vehicle_query_asks_for_all_three():
    t = dict(zip(NAMES, query_targets("This is a grey Chery Sedan.", "vehicle", VOCAB, GROUPS)))
    assert (t["colour"], t["brand"], t["type"]) == (
        VOCAB.colours.index("grey"), VOCAB.brands.index("Chery"), VOCAB.types.index("Sedan"))
    assert all(t[g.name] == MISSING for g in GROUPS if g.kind == "pedestrian")


@settings(max_examples=60, deadline=None)
@given(pedestrians)
def test_a_pedestrian_query_asks_for_what_its_label_states(p):
    import random

    caption = pedestrian_caption(p, random.Random(0))
    label = Label("000001.jpg", p.to_flags(), caption)
    assert query_targets(caption, "pedestrian", VOCAB, GROUPS) == label_targets(label, VOCAB, GROUPS)


def test_an_unreadable_query_asks_for_its_kind_alone():
    t = query_targets("somebody near the bus stop wearing something odd", "pedestrian", VOCAB, GROUPS)
    assert t[0] == 1 and all(v == MISSING for v in t[1:])


def _separable(n: int = 600, dim: int = 24, seed: int = 0):
    """Embeddings that encode a vehicle's colour, type and brand linearly, with partial labels."""
    rng = np.random.default_rng(seed)
    vehicles = [Vehicle(VOCAB.colours[rng.integers(3)], VOCAB.brands[rng.integers(4)], VOCAB.types[rng.integers(2)])
                for _ in range(n)]
    targets = np.array([encode_subject(v, GROUPS) for v in vehicles])
    codes = rng.normal(size=(sum(len(g.values) for g in GROUPS), dim))
    offsets = np.concatenate([[0], np.cumsum([len(g.values) for g in GROUPS])])
    emb = np.zeros((n, dim))
    for g in range(len(GROUPS)):
        stated = targets[:, g] != MISSING
        emb[stated] += codes[offsets[g] + targets[stated, g]]
    emb += 0.3 * rng.normal(size=emb.shape)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb.astype(np.float32), targets, vehicles


def test_heads_learn_separable_attributes_from_partial_labels():
    emb, targets, _ = _separable()
    partial = targets.copy()
    partial[::2, NAMES.index("type")] = MISSING  # half the labels do not state the type
    heads = AttributeHeads(GROUPS, emb.shape[1]).fit(emb[:400], partial[:400], HeadSettings(epochs=200))
    accuracy = heads.accuracy(emb[400:], targets[400:])
    assert accuracy["colour"] > 0.95 and accuracy["type"] > 0.95 and accuracy["brand"] > 0.95
    lp = heads.log_probs(emb[:5])
    for a, b in zip(heads.offsets[:-1], heads.offsets[1:]):  # a distribution per group
        np.testing.assert_allclose(np.exp(lp[:, a:b]).sum(1), 1.0, rtol=1e-5)


def test_untrained_groups_are_uninformative_and_attribute_scores_match_brute_force():
    emb, targets, vehicles = _separable(n=80, seed=1)
    heads = AttributeHeads(GROUPS, emb.shape[1]).fit(emb, targets, HeadSettings(epochs=50))
    queries = np.array([query_targets(vehicle_caption(v, period=True), "vehicle", VOCAB, GROUPS) for v in vehicles[:7]])
    candidates = np.random.default_rng(0).integers(0, len(emb), size=(7, 12))
    got = attribute_scores(heads, queries, emb, candidates)
    lp = heads.log_probs(emb)
    expected = np.array([[sum(lp[c, heads.offsets[g] + q[g]] for g in range(len(GROUPS)) if q[g] != MISSING)
                          for c in row] for q, row in zip(queries, candidates)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_heads_read_a_shifted_domain_when_they_centre_it_on_its_own_mean():
    emb, targets, _ = _separable(n=800, seed=4)
    heads = AttributeHeads(GROUPS, emb.shape[1]).fit(emb[:400], targets[:400], HeadSettings(epochs=200))
    assert heads.centre is not None and np.allclose(heads.centre, emb[:400].mean(0), atol=1e-6)
    # another domain (a camera): the same attributes, every embedding moved by one offset
    offset = 1.5 * np.random.default_rng(5).normal(size=emb.shape[1]) / np.sqrt(emb.shape[1])
    shifted = emb[400:] + offset.astype(np.float32)
    shifted /= np.linalg.norm(shifted, axis=1, keepdims=True)
    own = heads.accuracy(shifted, targets[400:], centre=shifted.mean(0))
    trained = heads.accuracy(shifted, targets[400:])
    assert min(own[g] for g in ("colour", "type", "brand")) > 0.9
    assert min(trained[g] for g in ("colour", "type", "brand")) < 0.75, trained  # the offset misleads them


def test_heads_fitted_with_one_seed_are_the_same_whatever_ran_before():
    import torch

    emb, targets, _ = _separable(n=100, seed=6)
    first = AttributeHeads(GROUPS, emb.shape[1]).fit(emb, targets, HeadSettings(epochs=5))
    torch.rand(100)  # the global generator moves on
    second = AttributeHeads(GROUPS, emb.shape[1]).fit(emb, targets, HeadSettings(epochs=5))
    np.testing.assert_array_equal(first.log_probs(emb), second.log_probs(emb))


def test_a_gallery_s_mean_is_over_its_readable_images_and_small_galleries_keep_the_training_one():
    from traffic_retrieval.retrieval.fusion import MIN_ADAPT
    from traffic_retrieval.retrieval.gallery import Gallery

    emb, _, _ = _separable(n=MIN_ADAPT + 20, seed=7)
    ok = np.ones(len(emb), bool)
    ok[:30] = False
    gallery = Gallery([f"{i}.jpg" for i in range(len(emb))], emb, ok)
    np.testing.assert_allclose(gallery.mean(), emb[30:].mean(0), rtol=1e-5, atol=1e-6)
    assert ok.sum() < MIN_ADAPT  # so fusion centres this gallery on the training mean (pipeline.fuse)


def test_heads_save_and_load_give_the_same_log_probs(tmp_path):
    emb, targets, _ = _separable(n=100, seed=2)
    heads = AttributeHeads(GROUPS, emb.shape[1], hidden=16, meta={"model": "TR-ViT-Tiny"}).fit(
        emb, targets, HeadSettings(epochs=20, hidden=16))
    loaded = AttributeHeads.load(heads.save(tmp_path / "heads.safetensors"))
    assert loaded.groups == heads.groups and loaded.meta == {"model": "TR-ViT-Tiny"}
    np.testing.assert_allclose(loaded.log_probs(emb), heads.log_probs(emb), rtol=1e-6)  # the centre included
    uncentred = AttributeHeads(GROUPS, emb.shape[1]).fit(emb, targets, HeadSettings(epochs=5, centred=False))
    again = AttributeHeads.load(uncentred.save(tmp_path / "uncentred.safetensors"))  # as heads fitted before centring
    assert again.centre is None
    np.testing.assert_allclose(again.log_probs(emb, centre=emb.mean(0)), uncentred.log_probs(emb), rtol=1e-6)


def test_a_file_that_is_not_heads_is_one_line_naming_it(tmp_path):
    from traffic_retrieval.core.fileio import InputError

    bad = tmp_path / "heads.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="heads.safetensors: not attribute heads"):
        AttributeHeads.load(bad)


def test_rerank_keeps_the_prior_in_its_scores():
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=(30, 8))
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = gallery[:4] + 0.1 * rng.normal(size=(4, 8))
    candidates = np.tile(np.arange(30), (4, 1))
    prior = np.zeros((4, 30))
    prior[:, 29] = 10.0  # the attribute term outweighs any similarity: image 29 must come first
    top, scores = rerank(queries, gallery, candidates, RerankSettings(weight=0.0), k=5, prior=prior)
    assert (top[:, 0] == 29).all()
    np.testing.assert_allclose(scores[:, 0], np.einsum("nd,nd->n", queries / np.linalg.norm(queries, axis=1)[:, None],
                                                       gallery[29][None]) + 10.0, rtol=1e-5)


@pytest.fixture(scope="module")
def small(drawn_dataset):
    """A small synthetic dataset (train labels to fit on, a test split to rank) and random weights."""
    return drawn_dataset("fusion", seed=5, train=80, val=20, test=40)


def test_attributes_then_infer_with_them_end_to_end(small, tmp_path, capsys):
    from traffic_retrieval.apps import cli
    from traffic_retrieval.core.submission import read_submission

    data, checkpoint = small
    common = ["--data", str(data), "--pretrained", str(checkpoint), "--cache-dir", str(tmp_path / "c"), "--workers", "0"]
    heads = tmp_path / "heads.safetensors"
    assert cli.main(["attributes", "--out", str(heads), "--degraded-views", "1", *common]) == 0
    assert "accuracy on the val split: kind" in capsys.readouterr().out
    assert AttributeHeads.load(heads).meta["model"] == "TR-ViT-Tiny"
    assert cli.main(["infer", "--out", str(tmp_path / "plain.json"), *common]) == 0
    assert cli.main(["infer", "--out", str(tmp_path / "fused.json"), "--attributes", str(heads),
                     "--attribute-weight", "5", *common]) == 0
    plain, fused = read_submission(tmp_path / "plain.json"), read_submission(tmp_path / "fused.json")
    assert [t for t, _ in plain] == [t for t, _ in fused] and all(len(n) == 10 for _, n in fused)
    assert [n for _, n in plain] != [n for _, n in fused]  # the attribute term changes the ranking


def test_fused_ranking_equals_brute_force_over_the_whole_gallery(small):
    import torch

    from traffic_retrieval.core.layout import find_vocabulary, split_queries_and_gallery
    from traffic_retrieval.retrieval.encode import EncodeSettings, encode_texts
    from traffic_retrieval.retrieval.fusion import Fusion
    from traffic_retrieval.retrieval.gallery import encode_gallery
    from traffic_retrieval.retrieval.models import ModelSettings, load_model
    from traffic_retrieval.retrieval.pipeline import QuerySettings, rank_queries

    data, checkpoint = small
    loaded = load_model(ModelSettings(None, str(checkpoint)))
    queries, paths = split_queries_and_gallery(data, "test")
    gallery = encode_gallery(loaded, paths, EncodeSettings(workers=0, progress=False))
    vocab = find_vocabulary(data)
    torch.manual_seed(1)
    heads = AttributeHeads(attribute_groups(vocab), gallery.embeddings.shape[1], meta={"model": loaded.name})
    fusion = Fusion(heads, weight=2.0, candidates=len(paths))
    ranking = rank_queries(loaded, gallery, queries, vocab, QuerySettings(fusion=fusion))
    texts_emb = encode_texts(loaded, ranking.texts)
    targets = np.array([query_targets(q, k, vocab, heads.groups) for q, k in zip(queries, ranking.kinds)])
    every = np.tile(np.arange(len(paths)), (len(queries), 1))
    fused = texts_emb @ gallery.embeddings.T + 2.0 / loaded.logit_scale * attribute_scores(
        heads, targets, gallery.embeddings, every)
    expected = np.argsort(-fused, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(ranking.indices, expected)
    np.testing.assert_allclose(ranking.scores, np.take_along_axis(fused, expected, axis=1), rtol=1e-4, atol=1e-5)


def test_heads_of_another_model_are_refused(small):
    from traffic_retrieval.core.fileio import InputError

    heads = AttributeHeads(GROUPS, 128, meta={"model": "ViT-B-32"})
    with pytest.raises(InputError, match="fitted on ViT-B-32 embeddings"):
        heads.check("TR-ViT-Tiny", 128)
    with pytest.raises(InputError, match="dimension 128"):
        AttributeHeads(GROUPS, 128).check("TR-ViT-Tiny", 512)
