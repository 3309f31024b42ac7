"""prepare: the documented outputs, their content, and identical bytes on a re-run."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from traffic_retrieval.apps import cli
from traffic_retrieval.core.labels import read_labels, read_queries
from traffic_retrieval.synthetic.generate import generate


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_prepare_writes_the_documented_files_identically_twice(tmp_path: Path, monkeypatch):
    data = tmp_path / "data" / "datasets"
    generate(data, train=60, val=12, test=20, seed=3, pretrain=10, progress=False)
    monkeypatch.chdir(tmp_path / "data")  # CSV paths must resolve from any working directory
    assert cli.main(["prepare", "--data", str(data)]) == 0
    out = tmp_path / "data"
    prepared = out / "prepared"
    first = _snapshot(prepared) | {"car_attribute.json": (out / "car_attribute.json").read_bytes()}
    assert cli.main(["prepare", "--data", str(data)]) == 0
    assert _snapshot(prepared) | {"car_attribute.json": (out / "car_attribute.json").read_bytes()} == first

    train = pd.read_csv(prepared / "train.csv", sep="\t")
    assert list(train.columns) == ["filepath", "title", "attribute"] and len(train) == 60
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in train["filepath"])
    labels = read_labels(data / "train" / "train_label.txt")
    assert list(train["title"]) == [l.caption for l in labels]
    assert list(train["attribute"]) == [l.attribute for l in labels]  # what the attribute loss trains on
    split = {k: read_labels(prepared / f"train_{k}_label.txt") for k in ("vehicle", "pedestrian")}
    assert sorted(split["vehicle"] + split["pedestrian"], key=labels.index) == labels
    assert all(l.kind == k for k, ls in split.items() for l in ls)
    queries = read_queries(data / "test" / "test_text.txt")
    kinds = (prepared / "test_kinds.txt").read_text().split()
    assert len(kinds) == len(queries)
    for kind in ("vehicle", "pedestrian"):
        assert read_queries(prepared / f"test_{kind}_text.txt") == [q for q, k in zip(queries, kinds) if k == kind]
    assert (prepared / "pretrain.csv").is_file()


def test_progress_bars_end_at_n_of_n(tmp_path: Path, capsys):
    """A bar left at N-1/N reads as a step that stopped short: each bar of synth and prepare ends full."""
    from traffic_retrieval.training.prepare import prepare

    data = tmp_path / "datasets"
    generate(data, train=12, val=4, test=8, seed=0, workers=1, progress=True)
    prepare(data, progress=True)
    err = capsys.readouterr().err
    for bar, n in (("train", 12), ("val", 4), ("test", 8), ("check train images", 12), ("check val images", 4)):
        last = [state for state in re.split(r"[\r\n]", err) if state.startswith(f"{bar}:")][-1]
        assert f"| {n}/{n} [" in last, last
