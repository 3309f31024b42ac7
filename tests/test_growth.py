"""Galleries that grow: running index again over a grown, shrunk or changed gallery encodes only the
images its index does not hold, and the updated index answers as one built anew."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from traffic_retrieval.core.images import list_images
from traffic_retrieval.retrieval import store as store_module
from traffic_retrieval.retrieval.encode import EncodeSettings, encode_texts
from traffic_retrieval.retrieval.engines import build_index, load_index
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.retrieval.rank import topk_blocked

QUERIES = ["a red SUV", "a blue Sedan", "a person in a white coat", "a black truck", "a woman with a bag"]


pytestmark = pytest.mark.usefixtures("one_faiss_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model(ModelSettings("TR-ViT-Tiny", None))


def draw(folder: Path, names: list[str], seed: int) -> None:
    """Wide and tall images of random colours and shapes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, name in enumerate(names):
        size = (96, 56) if i % 2 else (40, 90)
        image = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
        box = sorted(rng.integers(0, min(size), 2).tolist())
        ImageDraw.Draw(image).rectangle((box[0], box[0], box[1] + 4, box[1] + 4),
                                        fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        image.save(folder / name)


@pytest.mark.parametrize("backend, kind", [("faiss", "flat"), ("faiss", "ivfpq"), ("milvus", "flat")])
def test_a_grown_gallery_encodes_only_its_new_images_and_answers_as_a_rebuilt_index(tmp_path, monkeypatch, tiny,
                                                                                    backend, kind):
    folder = tmp_path / "gallery"
    draw(folder, [f"{i:03d}.jpg" for i in range(0, 80, 2)], seed=0)  # 40 images
    settings = EncodeSettings(workers=0, progress=False, cache_dir=tmp_path / "cache")
    encoded: list[str] = []
    real = store_module.encode_batches

    def counting(loaded, paths, *args, **kwargs):
        encoded.extend(Path(p).name for p in paths)
        return real(loaded, paths, *args, **kwargs)

    monkeypatch.setattr(store_module, "encode_batches", counting)
    out = tmp_path / "idx"
    build_index(tiny, list_images(folder), out, kind, settings, backend=backend)
    assert len(encoded) == 40
    before = load_index(out)
    encoded.clear()

    added = [f"{i:03d}.jpg" for i in range(1, 17, 2)]  # 8 new images, between the old ones in name order
    draw(folder, added, seed=1)
    for name in ("000.jpg", "040.jpg", "078.jpg"):
        (folder / name).unlink()
    draw(folder, ["020.jpg"], seed=2)  # replaced under the same name: another file, encoded again
    paths = list_images(folder)
    grown, line = build_index(tiny, paths, out, kind, settings, backend=backend)
    assert sorted(encoded) == sorted(added + ["020.jpg"]), encoded
    assert f"{len(paths) - 9} kept, 9 encoded (new or changed), 4 removed" in line, line
    assert len(grown) == 45 and grown.names == [p.name for p in paths]
    reopened = load_index(out)
    assert reopened.names == grown.names and type(reopened) is type(before)

    encoded.clear()
    assert "is up to date" in build_index(tiny, paths, out, kind, settings, backend=backend)[1] and not encoded

    rebuilt, _ = build_index(tiny, paths, tmp_path / "rebuilt", kind, settings, backend=backend, rebuild=True)
    np.testing.assert_allclose(np.asarray(reopened.store.rows), np.asarray(rebuilt.store.rows), atol=2e-3)
    queries = encode_texts(tiny, QUERIES)
    got_scores, got = reopened.search(queries, 10)
    want_scores, want = rebuilt.search(queries, 10)
    assert [[reopened.names[j] for j in row] for row in got] == [[rebuilt.names[j] for j in row] for row in want]
    np.testing.assert_allclose(got_scores, want_scores, atol=2e-3)
    assert np.array_equal(got, topk_blocked(queries, reopened.store.rows, 10, valid=reopened.ok)[1])
    if kind == "ivfpq":  # the trained lists were kept: the kept images' entries too, the new ones added
        assert reopened.index.ntotal == 45 and reopened.ids is not None
        kept = [reopened.names.index(n) for n in before.names if n in reopened.names and n != "020.jpg"]
        assert set(reopened.ids[kept]) <= set(range(40)) and reopened.ids.max() == 40 + 9 - 1
    if backend == "milvus":  # the deleted images' entries are gone from the collection
        entries = reopened.client().query(reopened.collection, filter="id >= 0", output_fields=["id"], limit=1000)
        assert sorted(int(e["id"]) for e in entries) == sorted(int(i) for i in reopened.ids[reopened.ok])


def test_an_index_of_another_engine_or_kind_lends_its_rows_to_the_one_built_in_its_place(tmp_path, monkeypatch, tiny):
    folder = tmp_path / "gallery"
    draw(folder, [f"{i:03d}.jpg" for i in range(30)], seed=3)
    settings = EncodeSettings(workers=0, progress=False, cache_dir=tmp_path / "cache")
    out, paths = tmp_path / "idx", list_images(folder)
    faiss_flat, _ = build_index(tiny, paths, out, "flat", settings)
    queries = encode_texts(tiny, QUERIES)
    want = faiss_flat.search(queries, 10)[1]
    encoded: list[str] = []
    real = store_module.encode_batches
    monkeypatch.setattr(store_module, "encode_batches",
                        lambda loaded, paths, *a, **kw: (encoded.extend(paths), real(loaded, paths, *a, **kw))[1])
    for backend, kind in (("milvus", "flat"), ("faiss", "hnsw"), ("faiss", "flat")):
        index, line = build_index(tiny, paths, out, kind, settings, backend=backend)
        assert "built anew from its rows (0 images encoded)" in line and not encoded, line
        reopened = load_index(out)
        assert (reopened.backend, reopened.kind) == (backend, kind)
        assert np.array_equal(reopened.search(queries, 10)[1], want)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        ["table.json", reopened.store.folder.name])  # the Milvus Lite folder and the hnsw file went
