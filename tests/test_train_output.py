"""What a training run prints: the upstream loop's progress, once, without the ~150-line model
description and parameter list (kept in out.log and params.txt) and without warnings that do not
apply (pinned memory on a CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from traffic_retrieval.synthetic.generate import generate
from traffic_retrieval.training.prepare import prepare

pytestmark = pytest.mark.slow

# As a notebook kernel shows a cell's output: what reaches sys.stderr is shown once, and what a child
# process writes to the inherited file descriptor 2 is echoed a second time. Here the buffer stands
# for the cell and goes to stdout; file descriptor 2 is read on its own.
AS_IN_A_NOTEBOOK = """
import io, sys
from pathlib import Path
from traffic_retrieval.training.train import TrainJob, default_settings, train
cell = io.StringIO()
sys.stderr = cell
settings = default_settings("TR-ViT-Tiny")
settings.epochs, settings.batch_size, settings.workers = 1, 16, 0
settings.attribute_loss, settings.degrade = 4.0, 0.7  # as the reproduce notebook's stage 1
try:
    train(TrainJob(Path(sys.argv[1]), logs=Path(sys.argv[2]), name="quiet"), settings)
finally:
    sys.stdout.write(cell.getvalue())
"""


def test_training_prints_its_progress_once_without_the_model_dump_or_the_pin_memory_warning(tmp_path: Path):
    data = tmp_path / "datasets"
    generate(data, train=16, val=0, test=0, seed=0, workers=1, progress=False)
    csv = prepare(data, progress=False) / "train.csv"
    done = subprocess.run([sys.executable, "-c", AS_IN_A_NOTEBOOK, str(csv), str(tmp_path / "log")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    shown, echoed = done.stdout, done.stderr
    assert "| INFO | Start epoch 0" in shown and "Train Epoch: 0" in shown
    # Each line once: a logging call before the upstream setup (the attribute heads' tokenizer lookup)
    # once gave the root logger a second console handler ("INFO:root:Train Epoch ..." beside each line).
    progress = [line for line in shown.splitlines() if "Train Epoch" in line]
    assert len(progress) == len(set(line.split("Train Epoch")[1] for line in progress)) >= 1, shown
    assert "INFO:root:" not in shown and "WARNING:root:" not in shown, shown
    assert "Train Epoch" not in echoed and "Start epoch" not in echoed  # shown once, not echoed again
    lines = shown.splitlines()
    assert len(lines) < 30, shown
    assert not [line for line in lines if "Model:" in line or "Params:" in line or "|   " in line or
                line.startswith(" ") or "CLIP(" in line], shown
    assert "pin_memory" not in shown + echoed
    log = (tmp_path / "log" / "quiet" / "out.log").read_text()
    assert "| INFO | Model:" in log and "CLIP(" in log and "|   batch_size: 16" in log  # the record keeps them
    assert "batch_size: 16" in (tmp_path / "log" / "quiet" / "params.txt").read_text()
