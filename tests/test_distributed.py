"""Scale-out: training through torchrun (2 processes, gloo on CPU) and gallery encoding sharded
across ranks, each rank writing its own shards of the embedding store."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image, ImageDraw

from traffic_retrieval.retrieval.encode import EncodeSettings, encode_images
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.retrieval.store import embed_gallery, embed_gallery_distributed, write_shards
from traffic_retrieval.training.train import TrainJob, TrainSettings, final_checkpoint, train

COLOURS = ["red", "blue", "green", "yellow", "white", "black"]


def draw_images(folder: Path, n: int) -> list[Path]:
    """n small PIL drawings, alternating wide 'cars' and tall 'pedestrians', each colour distinct."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        colour = COLOURS[i % len(COLOURS)]
        if i % 2:
            im = Image.new("RGB", (40, 90), "darkgrey")
            ImageDraw.Draw(im).rectangle((10, 22, 30, 60), fill=colour)
        else:
            im = Image.new("RGB", (96, 56), "grey")
            ImageDraw.Draw(im).rectangle((10, 15, 86, 45), fill=colour)
        paths.append(folder / f"{i:03d}.jpg")
        im.save(paths[-1])
    return paths


def test_two_sequential_ranks_write_their_own_shards_of_one_store(tmp_path):
    torch.manual_seed(0)
    loaded = load_model(ModelSettings("TR-ViT-Tiny", None))
    paths = draw_images(tmp_path / "g", 9)
    (tmp_path / "g" / "broken.jpg").write_bytes(b"not an image")
    paths.insert(4, tmp_path / "g" / "broken.jpg")
    settings = EncodeSettings(batch_size=2, workers=0, chunk=3, progress=False, cache_dir=tmp_path / "cache")
    written = []
    for rank in range(2):
        folder, bounds = write_shards(loaded, paths, settings, rank=rank, world=2)
        written.append(sorted(p.name for p in folder.glob("shard-*[0-9].npy")))
    assert bounds == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert written[0] == ["shard-0000000000-0000000003.npy", "shard-0000000006-0000000009.npy"]  # rank 0: chunks 0, 2
    assert len(written[1]) == 4  # rank 1 added chunks 1 and 3
    store = embed_gallery(loaded, paths, settings)  # seals the store without encoding anything
    whole, whole_ok = encode_images(loaded, paths, settings)
    assert np.array_equal(store.ok, whole_ok) and not store.ok[4]
    np.testing.assert_allclose(np.asarray(store.rows), whole, atol=2e-3)  # float16 shards


def _encode_in_group(rank: int, world: int, init: str, paths: list[Path], out: Path) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        torch.manual_seed(0)  # the same random weights on every rank
        store = embed_gallery_distributed(load_model(ModelSettings("TR-ViT-Tiny", None)), paths,
                                          EncodeSettings(batch_size=4, workers=0, chunk=3, progress=False,
                                                         cache_dir=out / "cache"))
        np.savez(out / f"rank{rank}.npz", embeddings=np.asarray(store.rows), ok=store.ok,
                 folder=str(store.folder))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_sharded_encoding_across_two_gloo_processes_writes_one_store(tmp_path):
    paths = draw_images(tmp_path / "g", 11)
    mp.spawn(_encode_in_group, args=(2, f"file://{tmp_path / 'rendezvous'}", paths, tmp_path), nprocs=2)
    torch.manual_seed(0)
    whole, _ = encode_images(load_model(ModelSettings("TR-ViT-Tiny", None)), paths, EncodeSettings(batch_size=4, workers=0, progress=False))
    folders = set()
    for rank in range(2):
        with np.load(tmp_path / f"rank{rank}.npz") as z:
            assert z["ok"].all() and np.allclose(z["embeddings"], whole, atol=2e-3)
            folders.add(str(z["folder"]))
    assert len(folders) == 1  # both ranks read the one store that they wrote together
    assert len(list(Path(folders.pop()).glob("shard-*[0-9].npy"))) == 4


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu_trains_with_rank0_logs(tmp_path):
    paths = draw_images(tmp_path / "images", 32)
    titles = [f"a {COLOURS[i % len(COLOURS)]} {'pedestrian' if i % 2 else 'car'}" for i in range(len(paths))]
    csv = tmp_path / "train.csv"
    csv.write_text("filepath\ttitle\n" + "".join(f"{p}\t{t}\n" for p, t in zip(paths, titles)))
    settings = TrainSettings(epochs=1, batch_size=4, lr=1e-3, warmup=1, wd=0.1, precision="fp32", workers=0,
                             extra=["--log-every-n-steps", "1"])
    run = train(TrainJob(csv, logs=tmp_path / "log", name="ddp", nproc=2), settings)

    assert run == tmp_path / "log" / "ddp" and final_checkpoint(tmp_path / "log", "ddp", 1).is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_1.pt"]
    assert sorted(p.name for p in (run / "weights").iterdir()) == ["epoch_1.safetensors"]  # rank 0 exported it
    assert [p.name for p in run.glob("out*")] == ["out.log"]  # no per-rank log file
    log = (run / "out.log").read_text()
    assert "Running in distributed mode with multiple processes" in log and "total 2" in log
    # 32 images, batch 4 per rank, 2 ranks: 4 steps, each logged once (rank 0 only)
    steps = re.findall(r"Train Epoch: 0 \[\s*(\d+)/", log)
    assert steps == ["8", "16", "24", "32"], steps  # 2 ranks x batch 4 a step, each step logged once
    losses = [float(x) for x in re.findall(r"Contrastive_loss: ([-\d.e+]+)", log)]
    assert losses and all(math.isfinite(x) for x in losses), losses
    assert log.count("Process (global: 1") == 0  # rank 1's start-up line is not in rank 0's file
