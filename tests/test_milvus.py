"""The Milvus backend (Milvus Lite, embedded) behind the index interface: the same answers as faiss's
exact index, filters by kind, camera and time applied inside the search, the index folder that
records its backend, and the commands that read it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from traffic_retrieval.apps import cli
from traffic_retrieval.core.metadata import NO_TIME, Filter, Metadata, parse_time
from traffic_retrieval.retrieval.engines import load_index
from traffic_retrieval.retrieval.gallery import Gallery
from traffic_retrieval.retrieval.index import TABLE, VectorIndex
from traffic_retrieval.retrieval.milvus_index import MilvusIndex, expression, quote
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.retrieval.rank import topk_blocked
from traffic_retrieval.retrieval.shards import write_store
from traffic_retrieval.synthetic.generate import generate

pytest.importorskip("milvus_lite")


pytestmark = pytest.mark.usefixtures("one_faiss_thread")  # tests/conftest.py


def unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def drawn_store(tmp_path: Path, n: int = 600, dim: int = 32):
    """A store of n rows (wide and tall images alternating, every 37th unreadable), and metadata: cameras
    "0".."4", one image a minute, every 11th without a row."""
    sizes = np.tile([[60, 40], [40, 60]], (n // 2, 1))
    sizes[::37] = 0
    names = [f"{i:05d}.jpg" for i in range(n - 2)] + ['quote"d.jpg', "é ü.jpg"]
    store = write_store(tmp_path / "cache" / "gallery-x", unit(n, dim), names, sizes, {"identity": {"model": "m"}})
    start = parse_time("2024-05-01T00:00:00Z")
    camera = np.array([str(i % 5) for i in range(n)], dtype=object)
    times = start + np.arange(n, dtype=np.int64) * 60 * 10**6
    camera[::11], times[::11] = "", NO_TIME
    return store, Metadata(camera, times)


FILTERS = [(None, Filter()), ("vehicle", Filter()), ("pedestrian", Filter.parse("1,3")),
           (None, Filter.parse(after="2024-05-01T02:00:00Z", before="2024-05-01T04:00:00Z")),
           ("vehicle", Filter.parse("0,4", after="2024-05-01T05:00:00Z"))]


def test_milvus_lite_flat_answers_as_faiss_flat_with_every_filter_inside_the_search(tmp_path):
    store, meta = drawn_store(tmp_path)
    queries = unit(20, 32, seed=1)
    built = MilvusIndex.build(store, "flat", metadata=meta, folder=tmp_path / "milvus")
    built.save(tmp_path / "milvus")
    milvus = load_index(tmp_path / "milvus")
    assert isinstance(milvus, MilvusIndex) and json.loads((tmp_path / "milvus" / TABLE).read_text())["backend"] == "milvus"
    assert milvus.names == store.names and np.array_equal(milvus.metadata.time, meta.time)
    faiss_flat = VectorIndex.build(store, "flat", metadata=meta)
    for kind, where in FILTERS:
        results = []
        for index in (faiss_flat, milvus):
            gallery = Gallery(store.names, store.rows, store.ok, store.kinds, index=index, metadata=index.metadata)
            results.append(gallery.search(queries, 10, kind, where))
        allowed = store.ok & where.mask(meta, len(store.names))
        if kind:
            allowed &= store.kinds == kind
        exact_scores, exact = topk_blocked(queries, store.rows, 10, valid=allowed)
        for scores, indices in results:
            assert indices.shape == (20, 10), (kind, where)  # a full top 10 among the allowed images
            assert np.array_equal(indices, exact), (kind, where)
            np.testing.assert_allclose(scores, exact_scores, atol=1e-5)


def test_a_mask_no_expression_names_is_sent_as_the_allowed_ids(tmp_path):
    store, meta = drawn_store(tmp_path, n=200)
    index = MilvusIndex.build(store, "flat", metadata=meta, folder=tmp_path / "m")
    valid = np.zeros(200, bool)
    valid[[3, 5, 8, 13, 21, 34, 55, 89, 144]] = True
    queries = unit(4, 32, seed=2)
    _, indices = index.search(queries, 10, valid)
    assert np.array_equal(indices, topk_blocked(queries, store.rows, 10, valid=valid & store.ok)[1])


def test_milvus_hnsw_under_a_strict_filter_still_returns_its_k(tmp_path):
    store, meta = drawn_store(tmp_path, n=2000)
    index = MilvusIndex.build(store, "hnsw", metadata=meta, folder=tmp_path / "m")
    index.set_depth(16)
    where = Filter.parse("2", after="2024-05-01T20:00:00Z", before="2024-05-01T21:00:00Z")  # 12 images
    allowed = store.ok & where.mask(meta, 2000)
    assert 10 <= allowed.sum() <= 13
    queries = unit(8, 32, seed=3)
    scores, indices = index.search(queries, 10, allowed, where=(None, where))
    assert np.array_equal(indices, topk_blocked(queries, store.rows, 10, valid=allowed)[1])


def test_filter_expressions_quote_camera_names():
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert expression("vehicle", Filter.parse('12,x"y', after="1970-01-01T00:00:01Z")) == (
        f'kind == "vehicle" and camera in ["12", "x\\"y"] and time > {NO_TIME} and time >= 1000000')
    assert expression(None, Filter()) == ""


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("milvus")
    generate(root / "datasets", train=0, val=0, test=30, seed=5, workers=1, progress=False)
    torch.manual_seed(0)
    checkpoint = root / "random.pt"
    torch.save(load_model(ModelSettings("TR-ViT-Tiny", None)).model.state_dict(), checkpoint)
    return root / "datasets", checkpoint


def test_index_backend_milvus_and_infer_search_read_the_folder_it_writes(synthetic, tmp_path, capsys):
    data, checkpoint = synthetic
    images = sorted((data / "test" / "test_images").iterdir())
    sidecar = data / "test" / "test_images.metadata.csv"
    rows = [f"{p.name},{i % 3},2024-05-01T{i // 60:02d}:{i % 60:02d}:00Z" for i, p in enumerate(images)]
    sidecar.write_text("image,camera,timestamp\n" + "\n".join(rows) + "\n")
    common = ["--data", str(data), "--cache-dir", str(tmp_path / "cache"), "--workers", "0",
              "--pretrained", str(checkpoint)]
    try:
        assert cli.main(["index", "--backend", "milvus", "--out", str(tmp_path / "idx"), *common]) == 0
        assert "as flat (milvus) with the metadata of 30 images" in capsys.readouterr().out
        table = json.loads((tmp_path / "idx" / TABLE).read_text())
        assert table["backend"] == "milvus" and (tmp_path / "idx" / table["uri"]).is_dir()
        plain, indexed = tmp_path / "plain.json", tmp_path / "indexed.json"
        assert cli.main(["infer", "--out", str(plain), *common]) == 0
        assert cli.main(["infer", "--out", str(indexed), "--index", str(tmp_path / "idx"), *common]) == 0
        assert json.loads(indexed.read_text()) == json.loads(plain.read_text())
        capsys.readouterr()
        query = ["search", "a red SUV", "--topk", "10", *common]
        for extra in ([], ["--index", str(tmp_path / "idx")]):
            assert cli.main([*query, *extra, "--camera", "1", "--before", "2024-05-01T00:25:00Z"]) == 0
            lines = capsys.readouterr().out.splitlines()
            assert lines[0] == "filter: camera 1, before 2024-05-01T00:25:00Z"
            hits = [line.split()[1] for line in lines[3:]]
            assert hits and set(hits) <= {p.name for i, p in enumerate(images) if i % 3 == 1 and i < 25}
            assert len(hits) == 8  # every allowed image: a filter inside the search, not after it
        assert cli.main([*query, "--after", "yesterday"]) == 2
        assert "error: --after 'yesterday': bad timestamp" in capsys.readouterr().err
        sidecar.write_text("image,camera,timestamp\n" + rows[0] + "\nnot-there.jpg,1,2024-05-01T00:00:00Z\n")
        assert cli.main(["index", "--out", str(tmp_path / "bad"), *common]) == 2
        assert capsys.readouterr().err.startswith(f"error: {sidecar}:3: unknown image 'not-there.jpg'")
        assert not (tmp_path / "bad").exists()
        assert cli.main(["index", "--backend", "milvus", "--kind", "ivfpq", "--out", str(tmp_path / "bad"), *common]) == 2
        assert "--backend milvus builds flat or hnsw, not ivfpq" in capsys.readouterr().err
    finally:
        sidecar.unlink(missing_ok=True)
