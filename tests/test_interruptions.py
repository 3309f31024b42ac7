"""kill -9 in the middle of augmentation, gallery encoding and training, then the same command
again: it continues where it stopped and ends where an uninterrupted run ends.

Each command runs as ``python -m traffic_retrieval.apps.cli`` in its own session; the whole process
group is killed (as a terminal, a scheduler or Ctrl-\\ would), as soon as its first chunk, cache
part or checkpoint is on disk.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import torch
from PIL import Image

from traffic_retrieval.core.labels import Label, write_labels
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.core.vocab import Vocabulary

pytestmark = pytest.mark.slow
VOCAB = Vocabulary(("black", "red", "white"), ("SUV", "Sedan", "Truck"), ("Audi", "Hongyan"))
COMMAND = [sys.executable, "-m", "traffic_retrieval.apps.cli"]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([*COMMAND, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def kill_when(args: list[str], cwd: Path, ready: Callable[[], bool], timeout: float = 120) -> None:
    """Start the command, SIGKILL its process group once ``ready()``; fail if it ends first."""
    proc = subprocess.Popen([*COMMAND, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"finished (code {proc.returncode}) before it could be killed: {proc.stderr.read()[-2000:]!r}")
            if time.monotonic() > deadline:
                pytest.fail("nothing to interrupt appeared in time")
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """Fixed weights: a random initialisation differs in every process."""
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    torch.save(load_model(ModelSettings("TR-ViT-Tiny", None)).model.state_dict(), path)
    return path


def _image(path: Path, i: int) -> None:
    Image.new("RGB", (60 + 5 * (i % 7), 40), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)).save(path)


def test_augment_killed_continues_to_the_same_file(tmp_path, checkpoint):
    data = tmp_path / "datasets"
    images = data / "train" / "train_images"
    images.mkdir(parents=True)
    partial = ["red Audi", "SUV", "Hongyan", "white Hongyan", "Truck", "Audi", "black Audi", "Sedan"]
    labels = []
    for i in range(24):
        _image(images / f"v{i:02d}.jpg", i)
        labels.append(Label(f"v{i:02d}.jpg", partial[i % len(partial)], f"A {partial[i % len(partial)]}"))
    write_labels(data / "train" / "train_label.txt", labels)
    VOCAB.save(tmp_path / "car_attribute.json")
    args = ["augment", "--data", str(data), "--chunk", "4", "--batch-size", "2", "--workers", "1",
            "--pretrained", str(checkpoint)]

    run([*args, "--out", str(tmp_path / "whole.txt")], tmp_path)
    out = tmp_path / "resumed.txt"
    kill_when([*args, "--out", str(out)], tmp_path, lambda: any(tmp_path.glob(".resumed.txt.parts-*/*.txt")))
    assert not out.exists()  # nothing half-done where the next step would read it
    done = len(list(tmp_path.glob(".resumed.txt.parts-*/*.txt")))
    rerun = run([*args, "--out", str(out)], tmp_path)
    assert out.read_bytes() == (tmp_path / "whole.txt").read_bytes()
    assert len(re.findall(r"augment: encode images:\s+0%", rerun.stderr)) == 24 // 4 - done  # only the rest
    assert not list(tmp_path.glob(".resumed.txt.parts-*"))


def test_gallery_encoding_killed_continues_to_the_same_submission(tmp_path, checkpoint):
    data = tmp_path / "datasets"
    gallery = data / "test" / "test_images"
    gallery.mkdir(parents=True)
    for i in range(24):
        _image(gallery / f"g{i:02d}.jpg", i)
    (data / "test" / "test_text.txt").write_text("This is a red Audi SUV.\nA white Truck.\nA man with a backpack.\n")
    args = ["infer", "--data", str(data), "--chunk", "4", "--batch-size", "3", "--workers", "1",
            "--pretrained", str(checkpoint)]

    run([*args, "--out", str(tmp_path / "whole.json"), "--cache-dir", str(tmp_path / "cache-whole")], tmp_path)
    cache = tmp_path / "cache"
    resume = [*args, "--out", str(tmp_path / "resumed.json"), "--cache-dir", str(cache)]
    kill_when(resume, tmp_path, lambda: any(cache.glob("gallery-*/shard-*.sizes.npy")))
    assert not (tmp_path / "resumed.json").exists() and not list(cache.glob("gallery-*/manifest.json"))
    finished = {p: p.stat().st_mtime_ns for p in cache.glob("gallery-*/shard-*[0-9].npy")
                if p.with_name(p.name.replace(".npy", ".sizes.npy")).is_file()}
    rerun = run(resume, tmp_path)
    assert (tmp_path / "resumed.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
    # one loader over the images of the missing shards alone (batches of 3 straddle shards of 4)
    todo = 6 - len(finished)
    assert {int(n) for n in re.findall(r"encode images \((\d+) of 6 shards to write\)", rerun.stderr)} == {todo}
    assert re.search(rf" {4 * todo}/{4 * todo} \[", rerun.stderr)
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in finished.items())  # not encoded again
    store = next(cache.glob("gallery-*"))
    assert (store / "manifest.json").is_file() and not list(store.glob(".*.tmp")) and not list(cache.glob(".*.tmp"))


def test_training_killed_resumes_from_its_last_checkpoint(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rows = ["filepath\ttitle"]
    for i in range(24):
        _image(images / f"t{i:02d}.jpg", i)
        rows.append(f"{images / f't{i:02d}.jpg'}\tA {VOCAB.colours[i % 3]} {VOCAB.types[i % 3]}")
    (images / "broken.jpg").write_bytes(b"\xff\xd8 broken after prepare checked it")
    rows.append(f"{images / 'broken.jpg'}\tA broken image")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    epochs = 4
    args = ["train", "--train-csv", str(tmp_path / "train.csv"), "--logs", str(tmp_path / "log"), "--name", "run",
            "--epochs", str(epochs), "--batch-size", "8", "--workers", "1", "--warmup", "2", "--resume"]
    checkpoints = tmp_path / "log" / "run" / "checkpoints"

    kill_when(args, tmp_path, lambda: any(checkpoints.glob("epoch_*.pt")), timeout=240)
    saved = max(int(p.stem.split("_")[1]) for p in checkpoints.glob("epoch_*.pt"))
    assert saved < epochs
    run(args, tmp_path)  # the same command again
    assert (checkpoints / f"epoch_{epochs}.pt").is_file()
    log = (tmp_path / "log" / "run" / "out.log").read_text()
    before, resumed = log.split("resuming checkpoint", 1)
    assert re.match(rf" '[^']*epoch_{saved}\.pt' \(epoch {saved}\)", resumed), resumed[:200]
    trained = {int(e) for e in re.findall(r"Train Epoch: (\d+)", resumed)}
    assert trained == set(range(saved, epochs))  # continued after the saved epoch, did not start over
    assert "unreadable training image" in log and str(images / "broken.jpg") in log
