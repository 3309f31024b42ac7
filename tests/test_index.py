"""index: the faiss vector index (exact and approximate), its atomic persistence, the subcommand,
infer/search with --index, and the GPU check's no-CUDA exit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch
from PIL import Image

from traffic_retrieval.apps import cli
from traffic_retrieval.core.fileio import InputError
from traffic_retrieval.core.images import list_images
from traffic_retrieval.core.vocab import packaged_vocabulary
from traffic_retrieval.retrieval.encode import EncodeSettings
from traffic_retrieval.retrieval.gallery import open_folder
from traffic_retrieval.retrieval import index as index_module
from traffic_retrieval.retrieval.index import TABLE, VectorIndex, recall_at_k
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.retrieval.pipeline import QuerySettings, answer
from traffic_retrieval.retrieval.rank import topk_blocked
from traffic_retrieval.retrieval.shards import Embeddings, write_store
from traffic_retrieval.retrieval.store import embed_gallery, model_identity
from traffic_retrieval.synthetic.generate import generate


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread():
    """faiss's OpenMP threads spin while they wait: on a shared machine the small searches of these
    tests take minutes with two threads and a fraction of a second with one (results are the same)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def unit(n: int, dim: int = 128, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n: int, dim: int = 64, seed: int = 0, queries: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors near an 8-dimensional subspace in 40 clusters (embeddings cluster; uniform noise,
    which no index compresses, is not what an index is for), and queries of the same kind."""
    world = np.random.default_rng(99)
    basis = np.linalg.qr(world.standard_normal((dim, 8)))[0]
    centres = world.standard_normal((40, 8))
    rng = np.random.default_rng(seed)

    def draw(m: int) -> np.ndarray:
        x = (centres[rng.integers(0, 40, m)] + 0.4 * rng.standard_normal((m, 8))) @ basis.T
        x += 0.05 * rng.standard_normal((m, dim))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(queries)


def names(n: int) -> list[str]:
    return [f"{i:05d}.jpg" for i in range(n)]


def in_memory(rows: np.ndarray, ok: np.ndarray | None = None) -> Embeddings:
    """An uncached gallery's embeddings: wide images, unreadable ones without a size."""
    sizes = np.tile([[60, 40]], (len(rows), 1))
    if ok is not None:
        sizes[~ok] = 0
    return Embeddings(names(len(rows)), rows, sizes, {"identity": {"model": "m"}})


def test_flat_equals_topk_blocked_with_unreadable_and_filtered_rows():
    gallery, queries = unit(800, 32), unit(60, 32, seed=1)
    ok = np.ones(800, bool)
    ok[::7] = False
    index = VectorIndex.build(in_memory(gallery, ok), "flat")
    assert index.index is None  # exact search needs no copy of the rows
    for valid in (None, np.arange(800) % 3 == 0):
        scores, indices = index.search(queries, 10, valid)
        allowed = ok if valid is None else ok & valid
        exact_scores, exact = topk_blocked(queries, gallery, 10, valid=allowed)
        assert np.array_equal(indices, exact)
        assert np.allclose(scores, exact_scores, atol=1e-5)
        assert allowed[indices].all()


def test_k_is_cut_to_the_rows_that_may_be_returned():
    ok = np.zeros(400, bool)
    ok[[3, 9, 20]] = True
    for kind in ("flat", "hnsw", "ivfpq"):
        scores, indices = VectorIndex.build(in_memory(unit(400, 16), ok), kind).search(unit(4, 16, 1), 10)
        assert indices.shape == (4, 3) and {int(j) for j in indices.ravel()} == {3, 9, 20}, kind


@pytest.mark.parametrize("kind", ["ivfpq", "hnsw"])
def test_tuned_depth_reaches_the_recall_target_on_queries_it_was_not_tuned_on(kind):
    gallery, queries = clustered(6000, queries=1000)
    index = VectorIndex.build(in_memory(gallery), kind)
    depth, held_out = index.tune(queries[:600])
    assert held_out >= 0.95 and recall_at_k(index, queries[600:]) >= 0.95
    ladder_top = index.index.nlist if kind == "ivfpq" else 2048
    assert depth < ladder_top  # the tuning stopped before the exhaustive end of its ladder
    assert index.params[index.depth_name] == depth and index.params["recall_queries"] == 300
    assert index.params["target_reached"] is True


def test_ivfpq_tuning_stops_probing_lists_where_the_codes_limit_recall(monkeypatch):
    """With a single, tiny refine the codes cap recall below the target: probing more lists gains
    nothing after a few, so the tuning must stop there instead of probing every list (at 2M images
    that was an exhaustive scan, 162 ms a query, for no recall)."""
    monkeypatch.setattr(index_module, "REFINE_LADDER", (1,))
    gallery, queries = clustered(6000, queries=400)
    index = VectorIndex.build(in_memory(gallery), "ivfpq")
    depth, held_out = index.tune(queries, target=0.9999)
    assert held_out < 0.9999 and index.params["refine"] == 1 and index.params["target_reached"] is False
    assert depth < index.index.nlist // 4, depth
    index.set_depth(index.index.nlist)
    everything = recall_at_k(index, queries[200:])
    assert everything - held_out < 0.02, (everything, held_out)  # what the lists left out was worth little


def test_ivfpq_rescores_its_candidates_exactly():
    gallery, queries = clustered(4000, queries=50)
    index = VectorIndex.build(in_memory(gallery), "ivfpq")
    scores, indices = index.search(queries, 10)
    np.testing.assert_allclose(scores, np.einsum("nd,nkd->nk", queries, gallery[indices]), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert index.index.nprobe == index.index.nlist  # untuned: every list, as exact as the codes allow
    assert recall_at_k(index, queries) >= 0.99


def test_approximate_search_restricted_to_a_few_rows_falls_back_to_exact():
    gallery, queries = unit(3000, 32), unit(40, 32, seed=1)
    allowed = np.random.default_rng(2).choice(3000, 10, replace=False)
    valid = np.zeros(3000, bool)
    valid[allowed] = True
    for kind in ("hnsw", "ivfpq"):
        index = VectorIndex.build(in_memory(gallery), kind)
        index.set_depth(1 if kind == "ivfpq" else 16)
        sel = faiss.IDSelectorBatch(allowed.astype(np.int64))
        params = faiss.SearchParametersIVF(sel=sel, nprobe=1) if kind == "ivfpq" else faiss.SearchParametersHNSW(
            sel=sel, efSearch=16)
        _, raw = index.index.search(queries, 10, params=params)
        assert (raw < 0).any()  # faiss alone reaches fewer than the 10 allowed rows for some queries
        _, indices = index.search(queries, 10, valid)
        assert np.array_equal(indices, topk_blocked(queries, gallery, 10, valid=valid)[1])


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_save_load_round_trip_links_the_store(tmp_path, kind):
    gallery, queries = clustered(2000, 32, queries=20)
    sizes = np.tile([[60, 40], [40, 60]], (1000, 1))
    sizes[[5, 77]] = 0
    table = names(1998) + ["é ü.jpg", "a$b.png"]
    store = write_store(tmp_path / "cache" / "gallery-x", gallery, table, sizes, {"identity": {"model": "m"}})
    built = VectorIndex.build(store, kind)
    if kind != "flat":
        built.tune(queries)
    built.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    assert (loaded.names, loaded.kind, loaded.params) == (table, kind, built.params)
    assert loaded.store.meta["identity"] == {"model": "m"}
    assert np.array_equal(loaded.ok, store.ok) and np.array_equal(loaded.store.kinds, store.kinds)
    assert np.array_equal(loaded.search(queries, 10)[1], built.search(queries, 10)[1])
    linked = {p.name: p.stat().st_ino for p in loaded.store.files()}
    assert linked == {p.name: p.stat().st_ino for p in store.files()}  # hard links: no second copy on disk
    if kind == "hnsw":
        assert loaded.index.hnsw.efSearch == built.index.hnsw.efSearch
    if kind == "ivfpq":
        assert loaded.index.nprobe == built.index.nprobe


def test_an_uncached_gallery_is_written_into_the_index_folder(tmp_path):
    gallery = unit(30, 8)
    VectorIndex.build(in_memory(gallery), "flat").save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    assert loaded.store.folder.parent == tmp_path / "idx"
    np.testing.assert_allclose(np.asarray(loaded.store.rows), gallery, atol=1e-3)


def test_save_replaces_atomically_and_a_failed_save_keeps_the_old_index(tmp_path, monkeypatch):
    out = tmp_path / "idx"
    VectorIndex.build(in_memory(unit(300, 8)), "hnsw").save(out)
    VectorIndex.build(in_memory(unit(400, 8, 1)), "hnsw").save(out)
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 3 and TABLE in files  # the table, and the one index file and store folder it names
    table = json.loads((out / TABLE).read_text())
    assert {table["index_file"], table["embeddings"]} < set(files)

    def broken_write(index, path):
        Path(path).write_bytes(b"half an index")
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken_write)
    with pytest.raises(RuntimeError, match="disk full"):
        VectorIndex.build(in_memory(unit(500, 8, 2)), "hnsw").save(out)
    assert sorted(p.name for p in out.iterdir()) == files  # no temporary file or folder left behind
    assert len(VectorIndex.load(out)) == 400


def test_an_index_of_the_earlier_format_is_refused_saying_rebuild_it(tmp_path):
    (tmp_path / TABLE).write_text(json.dumps({"index_file": "index-1.faiss", "kind": "flat", "names": ["a.jpg"]}))
    with pytest.raises(InputError, match="earlier version.*rebuild it"):
        VectorIndex.load(tmp_path)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("index") / "datasets"
    generate(data, train=0, val=0, test=30, seed=3, workers=1, progress=False)
    return data


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """One set of random weights for every step of a test."""
    torch.manual_seed(0)
    path = tmp_path / "random.pt"
    torch.save(load_model(ModelSettings("TR-ViT-Tiny", None)).model.state_dict(), path)
    return path


def test_index_subcommand_and_infer_with_index_equals_infer_without(synthetic, tmp_path, checkpoint, capsys):
    common = ["--data", str(synthetic), "--cache-dir", str(tmp_path / "cache"), "--workers", "0",
              "--pretrained", str(checkpoint)]
    assert cli.main(["index", "--out", str(tmp_path / "flat"), *common]) == 0
    index = VectorIndex.load(tmp_path / "flat")
    gallery = list_images(synthetic / "test" / "test_images")
    assert index.names == [p.name for p in gallery] and index.kind == "flat" and index.ok.all()
    identity = index.store.meta["identity"]
    assert identity["model"] == "TR-ViT-Tiny" and identity["pretrained"] == str(checkpoint)
    assert identity["checkpoint"][0] == str(checkpoint.resolve()) and identity["precision"] == "fp32"

    for kind in ("hnsw", "ivfpq"):
        assert cli.main(["index", "--out", str(tmp_path / kind), "--kind", kind, *common]) == 0
        out = capsys.readouterr().out
        assert re.search(r"(ef_search \d+|nprobe \d+, refine \d+) \(the least reaching recall@10 0.95 on \d+ "
                         r"queries\); recall@10 against exact on \d+ other queries: 1.0000", out), out

    plain, with_index = tmp_path / "plain.json", tmp_path / "indexed.json"
    assert cli.main(["infer", "--out", str(plain), *common]) == 0
    for kind in ("flat", "hnsw"):
        assert cli.main(["infer", "--out", str(with_index), "--index", str(tmp_path / kind), *common]) == 0
        assert json.loads(with_index.read_text()) == json.loads(plain.read_text()), kind
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
    assert "index built without flip TTA, asked with it: rebuild it with traffic-retrieval index --flip-tta" \
        in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_an_index_is_refused_after_its_checkpoint_is_rewritten_at_the_same_path(synthetic, tmp_path, checkpoint,
                                                                                capsys):
    """Retraining into the same run folder rewrites the weights under the same name: the index built with
    the old ones must not be used with the new."""
    common = ["--data", str(synthetic), "--cache-dir", str(tmp_path / "cache"), "--workers", "0",
              "--pretrained", str(checkpoint)]
    assert cli.main(["index", "--out", str(tmp_path / "idx"), *common]) == 0
    state = torch.load(checkpoint)
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, checkpoint)
    capsys.readouterr()
    assert cli.main(["infer", "--out", str(tmp_path / "x.json"), "--index", str(tmp_path / "idx"), *common]) == 2
    err = capsys.readouterr().err
    assert "rebuild it" in err and "checkpoint" in err and not (tmp_path / "x.json").exists()


def test_search_with_index_answers_as_without_and_opens_no_image(synthetic, tmp_path, monkeypatch):
    torch.manual_seed(0)
    loaded = load_model(ModelSettings("TR-ViT-Tiny", None))
    folder = synthetic / "test" / "test_images"
    settings = EncodeSettings(workers=0, progress=False, cache_dir=tmp_path / "cache")
    plain = open_folder(loaded, folder, settings)
    built = VectorIndex.build(embed_gallery(loaded, list_images(folder), settings), "flat")
    built.save(tmp_path / "idx")
    index = VectorIndex.load(tmp_path / "idx")

    def no_image(*args, **kwargs):
        raise AssertionError("an image was opened")

    monkeypatch.setattr(Image, "open", no_image)
    indexed = open_folder(loaded, folder, settings, index=index)
    assert indexed.index is index and list(indexed.kinds) == list(plain.kinds)
    assert set(plain.kinds) == {"vehicle", "pedestrian"}
    vocab = packaged_vocabulary()
    for query, kind in (("This is a grey Chery Sedan.", "auto"), ("a person with a backpack", "pedestrian"),
                        ("a red SUV", "vehicle")):
        got, want = (answer(loaded, g, vocab, query, kind, QuerySettings(topk=5)) for g in (indexed, plain))
        assert (got.kind, [h.name for h in got.hits]) == (want.kind, [h.name for h in want.hits])
        assert np.allclose([h.score for h in got.hits], [h.score for h in want.hits], atol=1e-5)
    assert model_identity(loaded) == index.store.meta["identity"]
