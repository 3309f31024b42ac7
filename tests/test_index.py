"""index: the faiss vector index (exact and approximate), its atomic persistence, the subcommand,
infer/search with --index, and the GPU check's no-CUDA exit."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from traffic_retrieval.apps import cli
from traffic_retrieval.core.images import list_images
from traffic_retrieval.retrieval.index import TABLE, VectorIndex, _search_params, model_meta, recall_at_k
from traffic_retrieval.core.vocab import packaged_vocabulary
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.retrieval.rank import topk_blocked
from traffic_retrieval.retrieval.encode import EncodeSettings
from traffic_retrieval.retrieval.gallery import open_folder
from traffic_retrieval.retrieval.pipeline import QuerySettings, answer
from traffic_retrieval.synthetic.generate import generate



def unit(n: int, dim: int = 128, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def names(n: int) -> list[str]:
    return [f"{i:05d}.jpg" for i in range(n)]


def test_flat_equals_topk_blocked_with_unreadable_and_filtered_rows():
    gallery, queries = unit(800, 32), unit(60, 32, seed=1)
    ok = np.ones(800, bool)
    ok[::7] = False
    index = VectorIndex.build(gallery, names(800), "flat", ok)
    for valid in (None, np.arange(800) % 3 == 0):
        scores, indices = index.search(queries, 10, valid)
        allowed = ok if valid is None else ok & valid
        exact_scores, exact = topk_blocked(queries, gallery, 10, valid=allowed)
        assert np.array_equal(indices, exact)
        assert np.allclose(scores, exact_scores, atol=1e-5)
        assert allowed[indices].all()


def test_k_is_cut_to_the_rows_that_may_be_returned():
    ok = np.zeros(50, bool)
    ok[[3, 9, 20]] = True
    for kind in ("flat", "hnsw"):
        scores, indices = VectorIndex.build(unit(50, 16), names(50), kind, ok).search(unit(4, 16, 1), 10)
        assert indices.shape == (4, 3) and {int(j) for j in indices.ravel()} == {3, 9, 20}


def test_hnsw_recall_at_10_against_exact_is_at_least_099_at_default_params():
    gallery, queries = unit(5000), unit(500, seed=1)
    index = VectorIndex.build(gallery, names(5000), "hnsw")
    assert recall_at_k(index, queries) >= 0.99


def test_approximate_search_restricted_to_a_few_rows_falls_back_to_exact():
    gallery, queries = unit(3000, 32), unit(40, 32, seed=1)
    allowed = np.random.default_rng(2).choice(3000, 10, replace=False)
    valid = np.zeros(3000, bool)
    valid[allowed] = True
    sel = faiss.IDSelectorBatch(allowed.astype(np.int64))
    for kind in ("hnsw", "ivf"):
        index = VectorIndex.build(gallery, names(3000), kind)
        _, raw = index.index.search(queries, 10, params=_search_params(index.index, kind, sel))
        assert (raw < 0).any()  # faiss alone reaches fewer than the 10 allowed rows for some queries
        _, indices = index.search(queries, 10, valid)
        assert np.array_equal(indices, topk_blocked(queries, gallery, 10, valid=valid)[1])


def test_ivf_searching_every_list_is_exact():
    gallery, queries = unit(4000, 32), unit(50, 32, seed=1)
    index = VectorIndex.build(gallery, names(4000), "ivf", nprobe=10**6)
    assert index.index.nprobe == index.index.nlist
    assert np.array_equal(index.search(queries, 10)[1], topk_blocked(queries, gallery, 10)[1])


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip(tmp_path, kind):
    gallery, queries = unit(2000, 32), unit(20, 32, seed=1)
    ok = np.ones(2000, bool)
    ok[[5, 77]] = False
    table = names(1998) + ["é ü.jpg", "a$b.png"]
    built = VectorIndex.build(gallery, table, kind, ok, {"model": "m", "pretrained": None, "square_pad": True})
    built.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    assert (loaded.names, loaded.kind, loaded.meta) == (table, kind, built.meta)
    assert np.array_equal(loaded.ok, ok)
    assert np.array_equal(loaded.search(queries, 10)[1], built.search(queries, 10)[1])
    assert np.allclose(loaded.embeddings(), gallery, atol=1e-6)
    if kind == "hnsw":
        assert loaded.index.hnsw.efSearch == built.index.hnsw.efSearch


def test_save_replaces_atomically_and_a_failed_save_keeps_the_old_index(tmp_path, monkeypatch):
    out = tmp_path / "idx"
    VectorIndex.build(unit(30, 8), names(30), "flat").save(out)
    VectorIndex.build(unit(40, 8, 1), names(40), "flat").save(out)
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 2 and TABLE in files  # the table and the one index file it names
    assert json.loads((out / TABLE).read_text())["index_file"] in files

    def broken_write(index, path):
        Path(path).write_bytes(b"half an index")
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken_write)
    with pytest.raises(RuntimeError, match="disk full"):
        VectorIndex.build(unit(50, 8, 2), names(50), "flat").save(out)
    assert sorted(p.name for p in out.iterdir()) == files  # no temporary file left behind
    assert len(VectorIndex.load(out)) == 40


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("index") / "datasets"
    generate(data, train=0, val=0, test=30, seed=3, workers=1, progress=False)
    return data


def test_index_subcommand_and_infer_with_index_equals_infer_without(synthetic, tmp_path, capsys):
    common = ["--data", str(synthetic), "--cache-dir", str(tmp_path / "cache"), "--workers", "0"]
    torch.manual_seed(0)
    checkpoint = tmp_path / "random.pt"  # one set of random weights for every step of the test
    torch.save(load_model(ModelSettings("TR-ViT-Tiny", None)).model.state_dict(), checkpoint)
    common += ["--pretrained", str(checkpoint)]

    assert cli.main(["index", "--out", str(tmp_path / "flat"), *common]) == 0
    index = VectorIndex.load(tmp_path / "flat")
    gallery = list_images(synthetic / "test" / "test_images")
    assert index.names == [p.name for p in gallery] and index.kind == "flat" and index.ok.all()
    assert index.meta["model"] == "TR-ViT-Tiny" and index.meta["pretrained"] == str(checkpoint)

    assert cli.main(["index", "--out", str(tmp_path / "hnsw"), "--kind", "hnsw", *common]) == 0
    assert "recall@10 against exact on 30 queries: 1.0000" in capsys.readouterr().out

    plain, with_index = tmp_path / "plain.json", tmp_path / "indexed.json"
    assert cli.main(["infer", "--out", str(plain), *common]) == 0
    assert cli.main(["infer", "--out", str(with_index), "--index", str(tmp_path / "flat"), *common]) == 0
    assert json.loads(with_index.read_text()) == json.loads(plain.read_text())
    capsys.readouterr()

    (synthetic / "test" / "test_images" / gallery[0].name).rename(tmp_path / gallery[0].name)
    try:
        assert cli.main(["infer", "--out", str(tmp_path / "x.json"), "--index", str(tmp_path / "flat"), *common]) == 2
        assert "index holds 30 images, the gallery 29" in capsys.readouterr().err
    finally:
        (tmp_path / gallery[0].name).rename(synthetic / "test" / "test_images" / gallery[0].name)
    assert cli.main(["infer", "--out", str(tmp_path / "x.json"), "--index", str(tmp_path / "flat"),
                     *common[:-1], "none"]) == 2
    assert "rebuild it" in capsys.readouterr().err
    assert cli.main(["infer", "--out", str(tmp_path / "x.json"), "--index", str(tmp_path / "flat"), "--flip-tta",
                     *common]) == 2
    assert "does not combine with --index" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_search_with_index_answers_as_without(synthetic, tmp_path):
    torch.manual_seed(0)
    loaded = load_model(ModelSettings("TR-ViT-Tiny", None))
    folder = synthetic / "test" / "test_images"
    plain = open_folder(loaded, folder, EncodeSettings(workers=0, progress=False))
    built = VectorIndex.build(plain.embeddings, plain.names, "flat", plain.ok,
                              model_meta(loaded))
    indexed = open_folder(loaded, folder, EncodeSettings(workers=0, progress=False), index=built)
    assert indexed.index is built
    vocab = packaged_vocabulary()
    for query, kind in (("This is a grey Chery Sedan.", "auto"), ("a person with a backpack", "pedestrian"),
                        ("a red SUV", "vehicle")):
        got, want = (answer(loaded, g, vocab, query, kind, QuerySettings(topk=5)) for g in (indexed, plain))
        assert (got.kind, [h.name for h in got.hits]) == (want.kind, [h.name for h in want.hits])
        assert np.allclose([h.score for h in got.hits], [h.score for h in want.hits], atol=1e-5)
