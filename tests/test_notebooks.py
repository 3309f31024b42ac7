"""Both notebooks, executed headless with papermill on a small synthetic dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import papermill
import pytest
import torch

from traffic_retrieval.core.labels import read_queries
from traffic_retrieval.retrieval.configs import TINY_VIT
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.synthetic.generate import generate, synthetic_root

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
pytestmark = pytest.mark.slow


def _execute(name: str, cwd: Path, **parameters) -> dict:
    out = cwd / f"executed-{name}"
    papermill.execute_notebook(str(NOTEBOOKS / name), str(out), parameters=parameters, cwd=str(cwd),
                               kernel_name="python3", progress_bar=False)
    return json.loads(out.read_text())


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_reproduce_then_quick_review(tmp_path: Path):
    sizes = dict(train=160, val=20, test=60, pretrain=160)
    _execute("reproduce.ipynb", tmp_path, synth_sizes=sizes, pretrain_epochs=1, epochs=1, batch_size=16, workers=0)
    run = tmp_path / "log" / "reproduce"
    submission = json.loads((run / "submission_test.json").read_text())
    assert len(submission["results"]) == 60 and all(len(r["image_names"]) == 10 for r in submission["results"])
    assert "map_official" in (run / "results.md").read_text()
    assert (run / "top10.png").stat().st_size > 10_000
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "checkpoints" / "epoch_1.pt").is_file()
    assert (run / "weights" / "epoch_1.safetensors").is_file()  # the weights-only export inference reads
    assert (tmp_path / "log" / "reproduce-pretrain" / "checkpoints" / "epoch_1.pt").is_file()
    augmented = tmp_path / synthetic_root(0, **sizes) / "train" / "train_label_augmented.txt"
    assert any(line.count("$") == 3 for line in augmented.read_text().splitlines())

    # The run folder carries how its submission was ranked (query.json): the command line given the run
    # alone, no query flag and no --data, writes the same bytes as the notebook did.
    record = json.loads((run / "query.json").read_text())
    assert record["flip_tta"] and record["rerank"] is None and record["balance"]["temperature"] > 0 and \
        record["fusion"]["heads"] == "attribute_heads.safetensors"
    done = subprocess.run([str(Path(sys.executable).parent / "traffic-retrieval"), "infer", "--pretrained", "log/reproduce",
                           "--out", "cli.json", "--workers", "0"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "cli.json").read_bytes() == (run / "submission_test.json").read_bytes()
    assert "query settings: recorded by the run (log/reproduce/query.json)" in done.stderr

    executed = _execute("quick-review.ipynb", tmp_path, workers=0)
    review = tmp_path / "log" / "quick-review"
    assert (review / "submission_test.json").read_text() == (run / "submission_test.json").read_text()
    assert (review / "top10.png").is_file()
    printed = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "mAP@10 (official, test split)" in printed and "query settings: recorded by the run" in printed

    # The same run with another seed (script/reproduce.sh -p seed 1) stops before it draws, trains or
    # writes anything: params.txt, checkpoints and scores keep describing the run that happened.
    before = _tree(tmp_path / "log")
    with pytest.raises(papermill.PapermillExecutionError, match=r"log/reproduce: holds a run made with other "
                                                                r"parameters \(data: .*; seed: 0 before, 1 now\)"):
        _execute("reproduce.ipynb", tmp_path, synth_sizes=sizes, pretrain_epochs=1, epochs=1, batch_size=16,
                 workers=0, seed=1)
    assert _tree(tmp_path / "log") == before and not (tmp_path / synthetic_root(1, **sizes)).exists()


def test_reproduce_in_real_data_mode_writes_the_test_submission_and_scores_val(tmp_path):
    """The real challenge data has no test ground truth and no pretrain split, and starts from a given
    backbone: the notebook writes the test submission (the file to upload) and scores the val split."""
    data = tmp_path / "challenge"
    generate(data, train=120, val=30, test=40, seed=5, workers=1, progress=False)
    (data / "test" / "test_ground_truth.txt").unlink()
    torch.manual_seed(0)
    backbone = tmp_path / "backbone.pt"
    torch.save(load_model(ModelSettings(name=TINY_VIT)).model.state_dict(), backbone)
    _execute("reproduce.ipynb", tmp_path, data_root=str(data), synthetic=False, model=TINY_VIT, pretrained=str(backbone),
             epochs=1, batch_size=16, workers=0, run_name="real")
    run = tmp_path / "log" / "real"
    test = json.loads((run / "submission_test.json").read_text())["results"]
    assert [r["text"] for r in test] == read_queries(data / "test" / "test_text.txt")  # official order
    assert all(len(r["image_names"]) == 10 for r in test)
    val = json.loads((run / "submission_val.json").read_text())["results"]
    assert len(val) == 30 and "val split" in (run / "results.md").read_text()
    assert not (tmp_path / "log" / "real-pretrain").exists()  # the backbone was given: no stage 1
