"""shards: the float16 store folder (shards, sizes, manifest) and ``Shards``, its rows read as one
float32 matrix a block or a few rows at a time."""

from __future__ import annotations

import json

import numpy as np
import pytest

from traffic_retrieval.core.fileio import InputError
from traffic_retrieval.retrieval.shards import MANIFEST, Embeddings, Shards, finish_store, shard_done, write_shard
from traffic_retrieval.retrieval.shards import write_store


def unit(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def stored(tmp_path) -> tuple[Embeddings, np.ndarray]:
    rows = unit(23)
    sizes = np.array([[60, 40], [40, 60], [0, 0]] * 7 + [[5, 5], [5, 9]], np.int32)
    return write_store(tmp_path / "s", rows, [f"{i}.jpg" for i in range(23)], sizes, {"identity": {"model": "m"}},
                       chunk=5), rows


def test_store_folder_holds_float16_shards_sizes_and_a_manifest(stored):
    store, rows = stored
    files = sorted(p.name for p in store.folder.iterdir())
    assert files == ["manifest.json", "shard-0000000000-0000000005.npy", "shard-0000000005-0000000010.npy",
                     "shard-0000000010-0000000015.npy", "shard-0000000015-0000000020.npy",
                     "shard-0000000020-0000000023.npy", "sizes.npy"]  # the per-shard size files were merged
    assert np.load(store.folder / files[1]).dtype == np.float16
    manifest = json.loads((store.folder / MANIFEST).read_text())
    assert manifest["names"] == [f"{i}.jpg" for i in range(23)] and manifest["identity"] == {"model": "m"}
    assert [s["rows"] for s in manifest["shards"]] == [5, 5, 5, 5, 3] and manifest["dtype"] == "float16"
    again = Embeddings.open(store.folder)
    assert again.names == store.names and again.meta == {"identity": {"model": "m"}}
    assert again.ok.tolist() == [i % 3 != 2 for i in range(21)] + [True, True]
    assert again.kinds[:3].tolist() == ["vehicle", "pedestrian", "vehicle"] and again.kinds[-2:].tolist() == [
        "vehicle", "pedestrian"]
    np.testing.assert_allclose(np.asarray(again.rows), rows, atol=1e-3)  # float16: 3 decimal digits


def test_shards_index_like_an_array(stored):
    store, rows = stored
    shards = store.rows
    want = np.asarray(shards)  # the float16 values, as float32
    assert shards.shape == (23, 16) and shards.dtype == np.float32 and len(shards) == 23
    assert want.dtype == np.float32 and np.abs(want - rows).max() < 1e-3
    np.testing.assert_array_equal(shards[7], want[7])
    np.testing.assert_array_equal(shards[-1], want[-1])
    np.testing.assert_array_equal(shards[3:12], want[3:12])  # across shard boundaries
    np.testing.assert_array_equal(shards[::4], want[::4])
    picks = np.array([[22, 0, 5], [5, 5, 13]])
    np.testing.assert_array_equal(shards[picks], want[picks])  # any shape, repeats, unsorted
    mask = np.arange(23) % 3 == 1
    np.testing.assert_array_equal(shards[mask], want[mask])
    np.testing.assert_array_equal(np.stack(list(shards)), want)
    np.testing.assert_array_equal(shards.T, want.T)
    assert [(start, len(block)) for start, block in shards.blocks(9)] == [(0, 9), (9, 9), (18, 5)]
    with pytest.raises(IndexError):
        shards[23]
    with pytest.raises(IndexError):
        shards[np.array([0, 23])]


def test_an_unfinished_folder_is_not_a_store_and_finishing_drops_other_chunkings(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    rows = unit(6)
    write_shard(folder, 0, rows[:4], np.ones((4, 2)))
    assert shard_done(folder, 0, 4) and not shard_done(folder, 4, 6)
    with pytest.raises(InputError, match="no finished embeddings"):
        Embeddings.open(folder)
    write_shard(folder, 0, rows[:3], np.ones((3, 2)))  # another chunking, of an earlier run
    write_shard(folder, 3, rows[3:], np.ones((3, 2)))
    store = finish_store(folder, [(0, 3), (3, 6)], list("abcdef"), {})
    assert sorted(p.name for p in folder.glob("shard-*")) == ["shard-0000000000-0000000003.npy",
                                                              "shard-0000000003-0000000006.npy"]
    np.testing.assert_allclose(np.asarray(store.rows), rows, atol=1e-3)


def test_a_damaged_store_is_one_line_naming_it(stored):
    store, _ = stored
    (store.folder / MANIFEST).write_text("{not json")
    with pytest.raises(InputError, match="unreadable embeddings manifest"):
        Embeddings.open(store.folder)
    shards = Shards(store.folder, [{"file": store.rows.files[0].name, "rows": 50, "offset": 128}], 16)
    with pytest.raises(InputError, match="shorter than its manifest"):
        shards.read(0, 50)
