"""The embedding store and the encoder's data path: shards written as they are made through one
loader, image sizes recorded, the machine's batch and workers, pinned memory only for CUDA, and an
exact search that holds no more than its memory budget."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from traffic_retrieval.apps import cli
from traffic_retrieval.core.images import image_kind, list_images
from traffic_retrieval.retrieval import encode, rank
from traffic_retrieval.retrieval import store as store_module
from traffic_retrieval.retrieval.encode import EncodeSettings, encode_images
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.retrieval.rank import block_rows, topk_blocked
from traffic_retrieval.retrieval.shards import Shards, write_store
from traffic_retrieval.retrieval.store import embed_gallery, model_identity


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model(ModelSettings("TR-ViT-Tiny", None))


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("store")
    for i in range(11):
        size = (60 + 3 * i, 40) if i % 2 else (30, 70 + i)
        Image.new("RGB", size, (23 * i % 256, 90, 200 - 9 * i)).save(folder / f"g{i:02d}.jpg")
    (folder / "g05.jpg").write_bytes(b"not an image")
    return list_images(folder)


def test_shards_are_written_through_one_loader_with_each_image_size(tiny, gallery, tmp_path, monkeypatch):
    loaders = []
    original = encode.DataLoader
    monkeypatch.setattr(encode, "DataLoader", lambda *a, **k: loaders.append(k) or original(*a, **k))
    settings = EncodeSettings(batch_size=3, workers=1, chunk=4, cache_dir=tmp_path, progress=False)
    store = embed_gallery(tiny, gallery, settings)
    assert len(loaders) == 1 and loaders[0]["num_workers"] == 1  # one loader for the three shards
    assert loaders[0]["pin_memory"] is False  # the model is on the CPU
    assert [len(np.load(f)) for f in store.rows.files] == [4, 4, 3]
    whole, ok = encode_images(tiny, gallery, EncodeSettings(batch_size=5, workers=0, progress=False))
    np.testing.assert_allclose(np.asarray(store.rows), whole, atol=2e-3)  # batches of 3 across shards of 4
    assert store.ok.tolist() == ok.tolist() == [p.name != "g05.jpg" for p in gallery]
    with Image.open(gallery[3]) as im:
        assert store.sizes[3].tolist() == list(im.size) and store.sizes[5].tolist() == [0, 0]
    readable = store.ok
    assert list(store.kinds[readable]) == [image_kind(p) for p, r in zip(gallery, readable) if r]
    assert store.meta["identity"] == model_identity(tiny) and store.names == [p.name for p in gallery]
    again = embed_gallery(tiny, gallery, settings)
    assert len(loaders) == 2 and again.folder == store.folder  # the store (the 2nd loader: encode_images's)


def test_an_encoding_that_fails_midway_continues_with_the_missing_shards(tiny, gallery, tmp_path, monkeypatch):
    settings = EncodeSettings(batch_size=4, workers=0, chunk=4, cache_dir=tmp_path, progress=False)
    written = []
    original_write = store_module.write_shard

    def write_then_fail(folder, start, *rest):
        if len(written) == 1:
            raise KeyboardInterrupt  # as a kill would stop it, after the first shard
        written.append(start)
        original_write(folder, start, *rest)

    monkeypatch.setattr(store_module, "write_shard", write_then_fail)
    with pytest.raises(KeyboardInterrupt):
        embed_gallery(tiny, gallery, settings)
    monkeypatch.setattr(store_module, "write_shard", original_write)
    seen = []
    original = encode.ImageFiles
    monkeypatch.setattr(encode, "ImageFiles", lambda paths, *a: seen.append(list(paths)) or original(paths, *a))
    resumed = embed_gallery(tiny, gallery, settings)
    assert written == [0] and seen == [gallery[4:]]  # the first shard was not encoded again
    whole, _ = encode_images(tiny, gallery, EncodeSettings(batch_size=4, workers=0, progress=False))
    np.testing.assert_allclose(np.asarray(resumed.rows), whole, atol=2e-3)


def test_the_machine_chooses_batch_and_workers(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert (EncodeSettings().batch_size, EncodeSettings().workers) == (64, 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(48)))
    assert (EncodeSettings().batch_size, EncodeSettings().workers) == (256, 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert EncodeSettings(batch_size=8).workers == 3 and EncodeSettings(batch_size=8).batch_size == 8


def test_memory_is_pinned_for_a_model_on_cuda(tiny, gallery, monkeypatch):
    kwargs = {}
    monkeypatch.setattr(encode, "DataLoader", lambda *a, **k: kwargs.update(k) or iter(()))
    monkeypatch.setattr(type(tiny), "device", property(lambda self: torch.device("cuda")))
    encode_images(tiny, gallery, EncodeSettings(workers=0, progress=False))
    assert kwargs["pin_memory"] is True


def test_cli_batch_and_workers_default_to_the_machine(capsys):
    with pytest.raises(SystemExit):
        cli.main(["infer", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the machine's choice, 256 where CUDA is present, else 64" in text
    assert "one a core up to 16 where CUDA is present, else 0" in text and "--memory-budget" in text


def test_exact_search_streams_the_shards_in_blocks_of_its_budget(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((1000, 32)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    queries = rng.standard_normal((70, 32)).astype(np.float32)
    store = write_store(tmp_path / "s", rows, [str(i) for i in range(1000)], chunk=128)
    reads = []
    original = Shards.read
    monkeypatch.setattr(Shards, "read", lambda self, a, b, *r: reads.append(b - a) or original(self, a, b, *r))
    budget = 64 * 1024
    valid = np.arange(1000) % 5 != 0
    scores, indices = topk_blocked(queries, store.rows, 10, block=16, valid=valid, budget=budget)
    per_row = 32 * 4 + 32 * 2 + 16 * 4  # float32 row, float16 read buffer, a score for each of 16 queries
    assert max(reads) == block_rows(budget, 32, 16, True) == budget // per_row and len(reads) > 3
    want_scores, want = topk_blocked(queries, np.asarray(store.rows), 10, valid=valid)
    assert np.array_equal(indices, want) and np.allclose(scores, want_scores, atol=1e-6)
    monkeypatch.setattr(rank, "machine_memory", lambda: 4 * 10**9)
    assert rank.default_budget() == 10**9


def test_memory_budget_and_machine_defaults_from_the_command_line(monkeypatch):
    from traffic_retrieval.apps.arguments import encode_settings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    parse = cli.build_parser("infer").parse_args
    a = parse(["infer", "--out", "x.json", "--pretrained", "none", "--memory-budget", "0.5"])
    settings = encode_settings(a)
    assert (settings.memory_budget, settings.batch_size, settings.workers) == (2**29, 64, 0)
    assert encode_settings(parse(["infer", "--out", "x", "--pretrained", "none", "--workers", "3"])).workers == 3
    with pytest.raises(SystemExit):
        parse(["infer", "--out", "x.json", "--pretrained", "none", "--memory-budget", "0"])


def test_a_kind_filter_follows_a_new_kinds_table(tmp_path):
    from traffic_retrieval.retrieval.gallery import Gallery

    rows = np.eye(4, dtype=np.float32)
    gallery = Gallery(list("abcd"), rows, np.ones(4, bool), np.array(["vehicle"] * 2 + ["pedestrian"] * 2, object))
    assert sorted(gallery.search(rows, 4, "vehicle")[1][0]) == [0, 1]
    gallery.kinds = np.array(["pedestrian"] * 3 + ["vehicle"], object)
    assert gallery.search(rows, 4, "vehicle")[1][0].tolist() == [3]
