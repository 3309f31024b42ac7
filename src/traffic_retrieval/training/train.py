"""train: fine-tune with the upstream OpenCLIP training loop (``open_clip_train``).

Writes ``LOGS/NAME/{out.log, params.txt, checkpoints/epoch_N.pt, tensorboard/}``. The upstream
loop exits 0 without training when NAME already exists; here that is an error unless
``--resume`` asks to continue the run, and a run that leaves no final checkpoint fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional

import torch

from ..retrieval.models import TINY_MODEL, normalise_pretrained


class TrainingError(RuntimeError):
    pass


@dataclass
class TrainSettings:
    """Hyper-parameters passed to open_clip_train. ``SEED_SETTINGS`` are the A3R ones."""

    epochs: int = 5
    batch_size: int = 25
    lr: float = 4e-7
    warmup: int = 10000
    wd: float = 0.01
    precision: str = "amp"
    lr_scheduler: str = "cosine"
    workers: int = 2
    seed: int = 0
    extra: list[str] = field(default_factory=list)


SEED_SETTINGS = TrainSettings()  # ViT-bigG-14 on the real data, GPU (the seed's best run: epoch 5)
# The tiny model learns from scratch on the synthetic data on CPU: a normal CLIP learning rate,
# a short warmup and fp32 (AMP on CPU is about 14x slower); only the latest epoch is kept on disk.
TINY_SETTINGS = TrainSettings(epochs=6, batch_size=64, lr=1e-3, warmup=50, wd=0.1, precision="fp32",
                              extra=["--delete-previous-checkpoint"])
# Fine-tuning it (stage 2) uses a smaller learning rate, as the seed did, so as not to forget stage 1.
TINY_FINETUNE_SETTINGS = replace(TINY_SETTINGS, lr=3e-4, extra=list(TINY_SETTINGS.extra))


def default_settings(model: str, pretrained: Optional[str] = None) -> TrainSettings:
    """The preset of a model: the tiny one from scratch (no ``pretrained``) or fine-tuned; the seed's otherwise."""
    if model == TINY_MODEL:
        preset = TINY_FINETUNE_SETTINGS if pretrained else TINY_SETTINGS
    else:
        preset = SEED_SETTINGS
    settings = TrainSettings(**asdict(preset))
    if not torch.cuda.is_available():
        settings.precision = "fp32"
    return settings


def upstream_args(
    train_csv: Path, val_csv: Optional[Path], model: str, pretrained: Optional[str],
    logs: Path, name: str, settings: TrainSettings, resume: bool = False, square_pad: bool = True,
) -> list[str]:
    """The open_clip_train command line (plus ``--no-square-pad``, read by train_entry)."""
    s = settings
    args = [
        "--dataset-type", "csv", "--train-data", str(train_csv), "--csv-separator", "\t",
        "--csv-img-key", "filepath", "--csv-caption-key", "title",
        "--model", model, "--logs", str(logs), "--name", name,
        "--epochs", str(s.epochs), "--batch-size", str(s.batch_size), "--lr", str(s.lr),
        "--warmup", str(s.warmup), "--wd", str(s.wd), "--precision", s.precision,
        "--lr-scheduler", s.lr_scheduler, "--workers", str(s.workers), "--seed", str(s.seed),
        "--save-frequency", "1", "--report-to", "tensorboard", "--log-every-n-steps", "10",
        "--zeroshot-frequency", "0",
    ]
    if val_csv:
        args += ["--val-data", str(val_csv), "--val-frequency", "1"]
    if pretrained:
        args += ["--pretrained", str(pretrained)]
    if not torch.cuda.is_available():
        args += ["--device", "cpu"]
    if resume:
        args += ["--resume", "latest"]
    if not square_pad:
        args.append("--no-square-pad")
    return args + list(s.extra)


def final_checkpoint(logs: Path, name: str, epochs: int) -> Path:
    return Path(logs) / name / "checkpoints" / f"epoch_{epochs}.pt"


def train(
    train_csv: Path, model: str = TINY_MODEL, pretrained: Optional[str] = None,
    val_csv: Optional[Path] = None, logs: Path = Path("log"), name: str = "run",
    settings: Optional[TrainSettings] = None, resume: bool = False, square_pad: bool = True, nproc: int = 1,
) -> Path:
    """Run the upstream loop in a child process (``torchrun`` when nproc > 1); return the final checkpoint."""
    pretrained = normalise_pretrained(pretrained)  # "none", a run folder, a file or a tag
    settings = settings or default_settings(model, pretrained)
    run_dir = Path(logs) / name
    if run_dir.exists() and not resume:
        raise TrainingError(f"run {run_dir} already exists: pass --resume to continue it or choose another --name")
    args = upstream_args(train_csv, val_csv, model, pretrained, logs, name, settings, resume, square_pad)
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if nproc > 1 and not torch.cuda.is_available():
        args += ["--dist-backend", "gloo"]
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # "--" ends torchrun's options: its parser would take the loop's --logs for its own --logs-specs
    entry = ["-m", "traffic_retrieval.training.entry", *(["--"] if nproc > 1 else [])]
    code = subprocess.call([*launcher, *entry, *args], env=env)
    checkpoint = final_checkpoint(logs, name, settings.epochs)
    if code != 0:
        raise TrainingError(f"open_clip_train exited with code {code}; see {run_dir / 'out.log'}")
    if not checkpoint.is_file():
        raise TrainingError(f"open_clip_train exited without writing {checkpoint}: the run did not train")
    return checkpoint
