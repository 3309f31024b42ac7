"""A run records only what it did: a run folder's record of its parameters (``training/runs.py``),
checked before a run is continued, so that resuming never mixes two runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from traffic_retrieval.apps import cli
from traffic_retrieval.core.fileio import InputError
from traffic_retrieval.training import runs, train


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_run_is_recorded_continued_with_its_parameters_and_refused_with_others(tmp_path):
    run = tmp_path / "log" / "reproduce"
    runs.claim_run(run, "notebook", {"seed": 0, "sizes": (4000, 400), "data": tmp_path / "d"})
    runs.claim_run(run, "train", {"lr": 3e-4})
    (run / "params.txt").write_text("seed: 0\n")
    runs.claim_run(run, "notebook", {"seed": 0, "sizes": [4000, 400], "data": str(tmp_path / "d")})  # the same run
    before = _tree(run)
    with pytest.raises(InputError) as e:
        runs.claim_run(run, "notebook", {"seed": 1, "sizes": (4000, 400), "data": tmp_path / "d", "new": True})
    assert e.value.path == str(run) and e.value.defect == (
        "holds a run made with other parameters (new: None before, True now; seed: 0 before, 1 now): "
        f"give this run another name, or delete {run} to start it again")
    assert _tree(run) == before
    assert runs.recorded(run) == {"notebook": {"seed": 0, "sizes": [4000, 400], "data": str(tmp_path / "d")},
                                  "train": {"lr": 3e-4}}


def test_a_folder_without_a_record_is_not_taken_over(tmp_path):
    run = tmp_path / "old-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "params.txt").write_text("seed: 0\n")
    with pytest.raises(InputError, match=r"holds files of a run with no record of its train parameters "
                                         r"\(checkpoints, params.txt; no run.json\)"):
        runs.claim_run(run, "train", {"seed": 1})
    assert not (run / "run.json").exists()
    runs.claim_run(tmp_path / "new", "train", {"seed": 1})
    assert json.loads((tmp_path / "new" / "run.json").read_text()) == {"train": {"seed": 1}}


def test_train_resume_with_another_seed_stops_before_the_loop_and_keeps_params_txt(tmp_path, monkeypatch, capsys):
    csv = tmp_path / "train.csv"
    csv.write_text("filepath\ttitle\n")
    monkeypatch.setattr(train, "relayed", lambda *a, **k: 0)  # the upstream loop: "trained", writes nothing
    argv = ["train", "--train-csv", str(csv), "--logs", str(tmp_path / "log"), "--name", "r", "--epochs", "1"]
    assert cli.main(argv) == 1  # the loop ran (and, here, wrote no checkpoint)
    run = tmp_path / "log" / "r"
    (run / "params.txt").write_text("seed: 0\n")
    before, _ = _tree(run), capsys.readouterr()
    monkeypatch.setattr(train, "relayed", lambda *a, **k: pytest.fail("the upstream loop ran"))
    assert cli.main(argv + ["--resume", "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {run}: holds a run made with other parameters (")
    assert "(seed: 0 before, 1 now)" in err
    assert _tree(run) == before


def test_a_review_finds_the_data_of_the_run_it_reviews(tmp_path):
    run = tmp_path / "reproduce"
    runs.claim_run(run, "notebook", {"data": Path("data/synthetic/seed0/datasets")})
    assert runs.run_data(run) == Path("data/synthetic/seed0/datasets")
    with pytest.raises(InputError, match="not a run folder with a record of its data"):
        runs.run_data(tmp_path / "checkpoint.pt")
