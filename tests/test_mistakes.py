"""Every user mistake of issue #16 ends in one line naming the file (and line where there is one) and
what was expected, with exit code 2, before any model loads or any output is written; never a
traceback, never an exit code 0 over meaningless input."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import open_clip
import pytest

from traffic_retrieval.apps import cli
from traffic_retrieval.synthetic.generate import generate

LABELS = "a label file (image$attribute$caption, one a line)"
QUERIES = "a query file (one query a line)"
IMAGES = "a folder of images (.jpg, .png, ...)"


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _empty(path: Path) -> None:
    shutil.rmtree(path)
    path.mkdir()


# id -> (how the mistake is made in the data root, the command line, the message); DATA stands for the
# data root, WORK for the folder the command runs in
CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "label file is a folder": (
        lambda d: _folder(d / "train" / "train_label.txt"),
        "prepare --data DATA --out WORK/out",
        f"DATA/train/train_label.txt: is a folder; expected {LABELS}"),
    "--train-labels is a folder": (
        lambda d: None,
        "prepare --data DATA --out WORK/out --train-labels DATA/train",
        f"DATA/train: is a folder; expected {LABELS}"),
    "query file is a folder": (
        lambda d: _folder(d / "test" / "test_text.txt"),
        "infer --data DATA --out WORK/sub.json --pretrained none",
        f"DATA/test/test_text.txt: is a folder; expected {QUERIES}"),
    "submission is a folder": (
        lambda d: None,
        "evaluate --submission DATA/test --ground-truth DATA/test/test_ground_truth.txt",
        'DATA/test: is a folder; expected a submission JSON file ({"results": [...]})'),
    "ground truth is a folder": (
        lambda d: None,
        "evaluate --submission WORK/sub.json --ground-truth DATA/test",
        "DATA/test: is a folder; expected a ground-truth file (query$image.jpg$..., or a label file)"),
    "infer --out is a folder": (
        lambda d: None,
        "infer --data DATA --out DATA/test --pretrained none",
        "DATA/test: is a folder; expected a file name to write the submission to"),
    "evaluate --out is a folder": (
        lambda d: None,
        "evaluate --submission WORK/sub.json --ground-truth DATA/test/test_ground_truth.txt --out DATA/test",
        "DATA/test: is a folder; expected a file name to write the metrics JSON to"),
    "augment --out is a folder": (
        lambda d: None,
        "augment --data DATA --out DATA/train --pretrained none",
        "DATA/train: is a folder; expected a file name to write the completed labels to"),
    "search --grid is a folder": (
        lambda d: None,
        "search red --data DATA --grid DATA/test --pretrained none",
        "DATA/test: is a folder; expected a file name to write the grid PNG to"),
    "index --out is a file": (
        lambda d: None,
        "index --data DATA --out DATA/test/test_text.txt --pretrained none",
        "DATA/test/test_text.txt: is a file; expected a folder to write the index into"),
    "infer --out cannot be written": (
        lambda d: None,
        "infer --data DATA --out DATA/test/test_text.txt/sub.json --pretrained none",
        "DATA/test/test_text.txt/sub.json: cannot be written: DATA/test/test_text.txt is a file, not a folder; "
        "choose another path"),
    "prepare --out cannot be written": (
        lambda d: None,
        "prepare --data DATA --out DATA/train/train_label.txt/out",
        "DATA/train/train_label.txt/out: cannot be written: DATA/train/train_label.txt is a file, not a folder; "
        "choose another path"),
    "empty gallery (infer)": (
        lambda d: _empty(d / "test" / "test_images"),
        "infer --data DATA --out WORK/sub.json --pretrained none",
        "DATA/test/test_images: holds no images (.jpg .jpeg .png .bmp .webp); expected the gallery's images"),
    "empty gallery (search)": (
        lambda d: _empty(d / "test" / "test_images"),
        "search red --data DATA --pretrained none",
        "DATA/test/test_images: holds no images (.jpg .jpeg .png .bmp .webp); expected the gallery's images"),
    "empty gallery (index)": (
        lambda d: _empty(d / "test" / "test_images"),
        "index --data DATA --out WORK/index --pretrained none",
        "DATA/test/test_images: holds no images (.jpg .jpeg .png .bmp .webp); expected the gallery's images"),
    "empty label file (prepare)": (
        lambda d: (d / "train" / "train_label.txt").write_text(""),
        "prepare --data DATA --out WORK/out",
        f"DATA/train/train_label.txt: no labels (the file is empty or blank); expected {LABELS}"),
    "empty label file (augment)": (
        lambda d: (d / "train" / "train_label.txt").write_text("\n \n"),
        "augment --data DATA --out WORK/augmented.txt --pretrained none",
        f"DATA/train/train_label.txt: no labels (the file is empty or blank); expected {LABELS}"),
    "train_images is a file": (
        lambda d: (shutil.rmtree(d / "train" / "train_images"), (d / "train" / "train_images").write_text("x")),
        "prepare --data DATA --out WORK/out",
        f"DATA/train/train_images: is a file; expected {IMAGES}"),
    "empty query file": (
        lambda d: (d / "test" / "test_text.txt").write_text(""),
        "infer --data DATA --out WORK/sub.json --pretrained none",
        f"DATA/test/test_text.txt: no queries (the file is empty or blank); expected {QUERIES}"),
    "blank query file": (
        lambda d: (d / "test" / "test_text.txt").write_text(" \n\t\n\n"),
        "infer --data DATA --out WORK/sub.json --pretrained none",
        f"DATA/test/test_text.txt: no queries (the file is empty or blank); expected {QUERIES}"),
    "--topk 0": (
        lambda d: None,
        "infer --data DATA --out WORK/sub.json --pretrained none --topk 0",
        "argument --topk: must be at least 1, not 0 (see traffic-retrieval infer --help)"),
    "--topk -1": (
        lambda d: None,
        "search red --data DATA --pretrained none --topk -1",
        "argument --topk: must be at least 1, not -1 (see traffic-retrieval search --help)"),
    "ground truth without relevant images (the query file)": (
        lambda d: None,
        "evaluate --submission WORK/sub.json --ground-truth DATA/test/test_text.txt",
        "DATA/test/test_text.txt: no query has a relevant image; expected the ground truth, query$image.jpg$... "
        "a line (is this the query file?)"),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("mistakes") / "datasets"
    generate(data, train=12, val=4, test=8, seed=0, workers=1, progress=False)
    return data


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"" for p in sorted(root.rglob("*"))}


def _run(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as e:  # argparse's own errors
        return e.code


@pytest.mark.parametrize("case", list(CASES))
def test_a_user_mistake_is_one_line_exit_2_before_any_work(case, dataset, tmp_path, monkeypatch, capsys):
    make_mistake, command, message = CASES[case]
    data, work = tmp_path / "datasets", tmp_path / "work"
    shutil.copytree(dataset, data)
    work.mkdir()
    make_mistake(data)
    monkeypatch.chdir(work)  # the default cache, data/cache, lands here if anything is encoded
    monkeypatch.setattr(open_clip, "create_model_and_transforms",
                        lambda *a, **k: pytest.fail("a model loaded before the inputs were checked"))
    before = _tree(tmp_path)
    def paths(text: str) -> str:
        return text.replace("DATA", str(data)).replace("WORK", str(work))

    assert _run([paths(arg) for arg in command.split()]) == 2
    out, err = capsys.readouterr()
    assert err == f"error: {paths(message)}\n" and out == ""
    assert _tree(tmp_path) == before  # nothing written, nothing lost


# ------------------------------------------------------------------ models that cannot be loaded

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """A folder of model files a user might give that are not a loadable TR-ViT-Tiny checkpoint."""
    import torch

    from traffic_retrieval.retrieval.models import ModelSettings, load_model

    folder = tmp_path_factory.mktemp("checkpoints")
    (folder / "notes.pt").write_text("not a checkpoint\n")
    state = load_model(ModelSettings("TR-ViT-Tiny", None, device="cpu")).model.state_dict()
    torch.save({"epoch": 3, "state_dict": state}, folder / "epoch_3.pt")
    (folder / "epoch_4.pt").write_bytes((folder / "epoch_3.pt").read_bytes()[:4000])  # killed while saving
    state["visual.conv1.weight"] = torch.zeros(64, 3, 16, 16)  # another architecture's patch embedding
    torch.save(state, folder / "other_architecture.pt")
    return folder


def _offline(monkeypatch) -> None:
    """As on a machine without network: the Hugging Face download fails (nothing is fetched)."""
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("cannot reach the Hub and the file is not cached")

    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", no_network)


MODEL_MISTAKES = {  # id -> (the model options, what the message must name)
    "not a checkpoint": ("--pretrained CKPT/notes.pt", "CKPT/notes.pt"),
    "truncated epoch_N.pt": ("--pretrained CKPT/epoch_4.pt", "CKPT/epoch_4.pt"),
    "another architecture's checkpoint": ("--pretrained CKPT/other_architecture.pt", "CKPT/other_architecture.pt"),
    "unknown model": ("--model NoSuchModel --pretrained none", "NoSuchModel"),
    "unknown tag": ("--pretrained no_such_tag", "no_such_tag"),
    "tag offline": ("--model ViT-B-32 --pretrained laion2b_s34b_b79k", "laion2b_s34b_b79k"),
}


@pytest.mark.parametrize("case", list(MODEL_MISTAKES))
def test_a_model_that_cannot_be_loaded_is_one_line_exit_2(case, dataset, checkpoints, tmp_path, monkeypatch, capsys):
    options, named = (text.replace("CKPT", str(checkpoints)) for text in MODEL_MISTAKES[case])
    _offline(monkeypatch)
    out = tmp_path / "sub.json"
    code = _run(["infer", "--data", str(dataset), "--out", str(out), "--device", "cpu", "--workers", "0",
                 "--cache-dir", "", *options.split()])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and named in err, err
    assert not out.exists()
