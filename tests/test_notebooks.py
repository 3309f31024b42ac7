"""Both notebooks, executed headless with papermill on a small synthetic dataset."""

from __future__ import annotations

import json
from pathlib import Path

import papermill
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
pytestmark = pytest.mark.slow


def _execute(name: str, cwd: Path, **parameters) -> dict:
    out = cwd / f"executed-{name}"
    papermill.execute_notebook(str(NOTEBOOKS / name), str(out), parameters=parameters, cwd=str(cwd),
                               kernel_name="python3", progress_bar=False)
    return json.loads(out.read_text())


def test_reproduce_then_quick_review(tmp_path: Path):
    _execute("reproduce.ipynb", tmp_path, synth_sizes=dict(train=160, val=20, test=60, pretrain=160),
             pretrain_epochs=1, epochs=1, batch_size=16, workers=0)
    run = tmp_path / "log" / "reproduce"
    submission = json.loads((run / "submission_test.json").read_text())
    assert len(submission["results"]) == 60 and all(len(r["image_names"]) == 10 for r in submission["results"])
    assert "map_official" in (run / "results.md").read_text()
    assert (run / "top10.png").stat().st_size > 10_000
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "checkpoints" / "epoch_1.pt").is_file()
    assert (tmp_path / "log" / "reproduce-pretrain" / "checkpoints" / "epoch_1.pt").is_file()
    augmented = tmp_path / "data" / "datasets" / "train" / "train_label_augmented.txt"
    assert any(line.count("$") == 3 for line in augmented.read_text().splitlines())

    executed = _execute("quick-review.ipynb", tmp_path, workers=0)
    review = tmp_path / "log" / "quick-review"
    assert (review / "submission_test.json").read_text() == (run / "submission_test.json").read_text()
    assert (review / "top10.png").is_file()
    printed = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "mAP@10 (official)" in printed
