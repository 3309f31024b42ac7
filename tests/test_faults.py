"""Faults of the machine around the data: entries of a gallery that are not regular files (a named pipe
blocks whoever opens it, a dangling link aborted infer), a disk that fills up, a cache shard damaged
after it was sealed. Each command that lists or opens images is run under a timeout."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from traffic_retrieval.apps import cli
from traffic_retrieval.core.fileio import out_of_space
from traffic_retrieval.core.images import scan_images, why_not_regular
from traffic_retrieval.core.labels import Label, read_labels, write_labels

CLI = [sys.executable, "-m", "traffic_retrieval.apps.cli"]
ODD = {"pipe.jpg": "a named pipe (FIFO)", "dangling.jpg": "a dangling symbolic link", "sock.jpg": "a socket"}


@contextmanager
def deadline(seconds: int):
    """Fail, instead of hanging the suite, when the block takes longer (a blocked open is interrupted)."""
    def expired(*_):
        raise TimeoutError(f"still running after {seconds} s: something opened a named pipe?")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def add_odd_entries(folder: Path) -> list[socket.socket]:
    """A named pipe, a dangling symbolic link and a socket with image names; the socket stays bound while
    its object lives."""
    os.mkfifo(folder / "pipe.jpg")
    (folder / "dangling.jpg").symlink_to(folder / "gone" / "x.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock.jpg"))
    return [sock]


@pytest.fixture(scope="module")
def odd(drawn_dataset):
    """A drawn dataset whose test gallery and train images hold the three odd entries (the train labels
    name the pipe), and its random-weights checkpoint."""
    data, checkpoint = drawn_dataset("faults", 4, train=30, val=0, test=40)
    keep = add_odd_entries(data / "test" / "test_images") + add_odd_entries(data / "train" / "train_images")
    labels = read_labels(data / "train" / "train_label.txt")
    vehicle = next(l for l in labels if l.kind == "vehicle")
    write_labels(data / "train" / "train_label.txt", [*labels, Label("pipe.jpg", vehicle.attribute, vehicle.caption)])
    yield data, checkpoint
    for s in keep:
        s.close()


def test_a_listing_opens_no_file_and_says_what_each_odd_entry_is(odd):
    data, _ = odd
    folder = data / "test" / "test_images"
    with deadline(10):
        images, skipped = scan_images(folder)
    assert len(images) == 40 and {p.name: why for p, why in skipped} == ODD
    assert why_not_regular(folder / "pipe.jpg") == ODD["pipe.jpg"] and why_not_regular(images[0]) is None
    link = folder / "link.jpg"
    link.symlink_to(images[0])  # a link to a regular file is followed
    try:
        assert folder / "link.jpg" in scan_images(folder)[0]
    finally:
        link.unlink()


def test_infer_ranks_a_gallery_with_a_fifo_a_dangling_link_and_a_socket_listing_them(odd, tmp_path):
    data, checkpoint = odd
    out = tmp_path / "sub.json"
    done = subprocess.run([*CLI, "infer", "--data", str(data), "--pretrained", str(checkpoint), "--out", str(out),
                           "--workers", "0", "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3 entries skipped, not regular files:" in done.stderr
    for name, why in ODD.items():
        assert f"{data / 'test' / 'test_images' / name} ({why})" in done.stderr
    assert out.is_file() and not set(ODD) & set(out.read_text().split('"'))


def test_strict_stops_at_the_first_odd_entry(odd, tmp_path, capsys):
    data, checkpoint = odd
    out = tmp_path / "sub.json"
    with deadline(60):
        code = cli.main(["infer", "--data", str(data), "--pretrained", str(checkpoint), "--out", str(out), "--strict",
                         "--workers", "0", "--cache-dir", str(tmp_path / "cache")])
    assert code == 2 and not out.exists()
    assert f"error: {data / 'test' / 'test_images' / 'dangling.jpg'}: a dangling symbolic link, not an image file " \
           "(without --strict it is skipped)" in capsys.readouterr().err


def test_index_search_and_serve_skip_and_list_them(odd, tmp_path, capsys, monkeypatch):
    import uvicorn

    data, checkpoint = odd
    model = ["--data", str(data), "--pretrained", str(checkpoint), "--workers", "0", "--cache-dir", str(tmp_path / "c")]
    with deadline(90):
        assert cli.main(["index", "--out", str(tmp_path / "index"), *model]) == 0
        assert "indexed 40 images" in capsys.readouterr().out
        assert cli.main(["search", "This is a red Audi SUV.", *model]) == 0
        captured = capsys.readouterr()
        assert len(captured.out.splitlines()) == 12 and "3 entries skipped, not regular files" in captured.err
        served = []
        monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
        assert cli.main(["serve", "--index", str(tmp_path / "index"), *model]) == 0
    assert served and "3 entries skipped, not regular files" in capsys.readouterr().err


def test_prepare_and_augment_skip_a_labelled_fifo(odd, tmp_path, capsys, caplog):
    data, checkpoint = odd
    with deadline(90):
        assert cli.main(["prepare", "--data", str(data), "--out", str(tmp_path / "prepared")]) == 0
        assert "pipe.jpg: a named pipe (FIFO), not an image file" in capsys.readouterr().err
        assert "pipe.jpg" not in (tmp_path / "prepared" / "prepared" / "train.csv").read_text()
        out = tmp_path / "augmented.txt"
        assert cli.main(["augment", "--data", str(data), "--pretrained", str(checkpoint), "--out", str(out),
                         "--vocab", str(tmp_path / "prepared" / "car_attribute.json"), "--workers", "0"]) == 0
    assert "images to complete unreadable, skipped: " in capsys.readouterr().err
    assert "pipe.jpg: a named pipe (FIFO), not an image file" in caplog.text  # each is logged as it is met
    assert next(l for l in read_labels(out) if l.image == "pipe.jpg").completed is None  # three fields, as unread


# ------------------------------------------------------------------ a full disk

def test_numpy_short_write_and_enospc_are_out_of_space():
    assert out_of_space(OSError("256000 requested and 153536 written"))
    assert out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    assert not out_of_space(OSError(errno.EACCES, "Permission denied")) and not out_of_space(OSError("other"))


def test_a_full_disk_while_encoding_names_the_path_exits_2_and_keeps_nothing(odd, tmp_path, capsys, monkeypatch):
    """A faked full disk: numpy's ``tofile`` writes part of the shard and stops, as it does on a full tmpfs
    (``256000 requested and 153536 written``, no errno)."""
    data, checkpoint = odd
    real_save = np.save

    def full(file, array, *args, **kwargs):
        if hasattr(file, "write") and np.asarray(array).size > 1000:
            file.write(b"\x93NUMPY" + b"\0" * 100)
            raise OSError(f"{np.asarray(array).nbytes} requested and 100 written")
        return real_save(file, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", full)
    cache, out = tmp_path / "cache", tmp_path / "sub.json"
    code = cli.main(["infer", "--data", str(data), "--pretrained", str(checkpoint), "--out", str(out),
                     "--workers", "0", "--cache-dir", str(cache)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and not out.exists()
    assert err.startswith(f"error: {cache}/gallery-") and "shard-0000000000-0000000040.npy: the disk holding it is full" \
        in err and "nothing half-written was kept" in err
    assert not [p for p in cache.rglob("*") if p.is_file()]  # no shard, no temporary file


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                                                capture_output=True).returncode == 0


def test_infer_on_a_real_full_tmpfs_is_one_line_with_nothing_half_written(odd, tmp_path, capsys):
    data, checkpoint = odd
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "12k"):
        pytest.skip("mounting a tmpfs needs root here (the faked full disk above runs everywhere)")
    try:
        out = tmp_path / "sub.json"
        code = cli.main(["infer", "--data", str(data), "--pretrained", str(checkpoint), "--out", str(out),
                         "--workers", "0", "--cache-dir", str(disk / "cache")])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2 and not out.exists()
        assert err.startswith(f"error: {disk}/cache/gallery-") and "the disk holding it is full" in err, err
        left = [p for p in disk.rglob("*") if p.is_file()]
        assert not [p for p in left if p.name.endswith(".tmp")]  # no temporary file left
        for p in left:  # what is there is whole (a shard without its sizes file is encoded again next time)
            np.load(p)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# ------------------------------------------------------------------ a damaged cache

def test_a_damaged_cache_shard_is_encoded_again_with_a_note(odd, tmp_path, capsys, caplog):
    data, checkpoint = odd
    cache = tmp_path / "cache"
    args = ["infer", "--data", str(data), "--pretrained", str(checkpoint), "--workers", "0", "--cache-dir", str(cache),
            "--chunk", "16"]
    assert cli.main([*args, "--out", str(tmp_path / "a.json")]) == 0
    store = next(cache.glob("gallery-*"))
    shards = sorted(store.glob("shard-*.npy"))
    assert len(shards) == 3
    with open(shards[1], "r+b") as f:
        f.truncate(200)
    untouched = {p: p.stat().st_mtime_ns for p in (shards[0], shards[2])}
    capsys.readouterr()
    assert cli.main([*args, "--out", str(tmp_path / "b.json")]) == 0
    assert f"the cached embeddings in {store} no longer match their manifest ({shards[1].name}: 200 bytes" \
        in caplog.text
    assert "1 of 3 shards to write" in capsys.readouterr().err  # only what was lost
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched
    (store / "manifest.json").write_text("{not json")  # a damaged manifest: everything again, not fatal
    assert cli.main([*args, "--out", str(tmp_path / "c.json")]) == 0
    assert (tmp_path / "c.json").read_bytes() == (tmp_path / "a.json").read_bytes()
    shutil.rmtree(cache)


def test_an_image_that_vanishes_before_it_is_encoded_is_skipped(odd, tmp_path):
    from traffic_retrieval.retrieval.encode import EncodeSettings
    from traffic_retrieval.retrieval.models import ModelSettings, load_model
    from traffic_retrieval.retrieval.store import gallery_embeddings

    data, checkpoint = odd
    kept = sorted((data / "test" / "test_images").glob("*.jpg"))[:3]
    gone = tmp_path / "listed-then-deleted.jpg"  # listed, then gone before its stat and its read
    emb, ok = gallery_embeddings(load_model(ModelSettings(None, str(checkpoint))), [kept[0], gone, kept[1]],
                                 EncodeSettings(cache_dir=tmp_path / "cache", workers=0, progress=False))
    assert ok.tolist() == [True, False, True] and not emb[1].any()
