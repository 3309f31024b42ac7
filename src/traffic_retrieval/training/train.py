"""train: fine-tune with the upstream OpenCLIP training loop (``open_clip_train``).

Writes ``LOGS/NAME/{out.log, params.txt, checkpoints/epoch_N.pt, weights/epoch_N.safetensors,
tensorboard/, run.json}``: only the latest full checkpoint (for ``--resume``) is kept, and a weights-only
export of every epoch (for inference, and to pick an epoch as the seed picked epoch 5 of 5). The
upstream loop exits 0 without training when NAME already exists; here that is an error unless
``--resume`` asks to continue the run, and a run that leaves no final checkpoint fails.

``plan`` turns a job and its settings into the exact command line, by these rules:

- device: the policy of retrieval/device.py (CUDA when present; a large model without CUDA is an
  error unless ``--device cpu``); precision: bf16 AMP where the GPU has bf16, fp16 AMP otherwise,
  fp32 on the CPU (AMP on a CPU is about 14x slower);
- ``--nproc N`` keeps the seed's schedule in samples: the batch stays per process (25 for the seed),
  so a step sees N times the samples and the warmup is divided by N (10,000 steps on one GPU, 1,250
  on eight); the learning rate stays; the loss is computed locally with gathered features
  (``--local-loss --gather-with-grad``), as OpenCLIP recommends for several GPUs;
- gradient checkpointing is on when the memory estimate (training/memory.py, of allocated memory)
  exceeds 80% of the GPU's memory, the rest being the CUDA context, NCCL's buffers and the caching
  allocator's slack; on an H200 it cost 31% of the training throughput (90.4 -> 62.6 samples/s,
  docs/gpu.md) and saved 7.5 GiB at batch 25.

``run.json`` (``runs.claim_run``) records what shapes the run, so that ``--resume`` with other data or
settings stops instead of "resuming" another run and rewriting its ``params.txt``.
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional

import torch

from ..core.fileio import require_file
from ..retrieval.configs import TINY_MODEL, is_package_config
from ..retrieval.device import choose_device, free_gpu_memory, training_precision
from ..retrieval.levers import Levers, resolve, train_arguments
from ..retrieval.weights import normalise_pretrained
from .memory import GIB, MemoryEstimate, estimate_training_memory
from .runs import claim_run

MEMORY_HEADROOM = 0.8  # share of the GPU's memory a run may plan to allocate
ASSUMED_GPU_GIB = 80.0  # what --dry-run plans for where no GPU is visible


class TrainingError(RuntimeError):
    pass


@dataclass
class TrainSettings:
    """Hyper-parameters passed to open_clip_train. ``SEED_SETTINGS`` are the A3R ones."""

    epochs: int = 5
    batch_size: int = 25  # per process
    lr: float = 4e-7
    warmup: int = 10000  # steps, for one process (divided by --nproc)
    wd: float = 0.01
    precision: Optional[str] = None  # None: the device policy (amp_bf16 / amp on a GPU, fp32 on a CPU)
    lr_scheduler: str = "cosine"
    workers: int = 2
    seed: int = 0
    grad_checkpointing: Optional[bool] = None  # None: when the memory estimate needs it
    degrade: float = 0.0  # share of training crops degraded as a surveillance camera would (training/degrade.py)
    attribute_loss: float = 0.0  # weight of the attribute heads' loss on both towers (training/attribute_loss.py)
    levers: str = "none"  # GPU levers (retrieval/levers.py): compile, fused-adamw; speed only, not in run.json
    extra: list[str] = field(default_factory=list)  # more open_clip_train options, passed as they are


SEED_SETTINGS = TrainSettings(workers=8)  # ViT-bigG-14 on the real data, GPU (the seed's best run: epoch 5)
# The tiny models learn from scratch on the synthetic data on CPU: a short warmup, and the camera
# degradation on 70% of the crops (training/degrade.py). Four epochs of a 14,000-image pretrain split:
# two left stage 1 short of what it can learn (seed 1: 0.676 official mAP@10 with two, 0.837 with four;
# docs/shift/dev-seed1-stage1-epochs.md); the cost is time: the default run took 21 min on 2 cores
# training at 60 samples/s (best-result-review/README.md), over its 15-minute budget there. The
# learning rate, 2e-3, is twice CLIP's usual: in about 880 steps the image tower must learn small cues (a
# sleeve, a badge) from scratch; chosen on seed 1 among 1e-3, 2e-3 and 4e-3 (docs/domain-shift.md).
TINY_SETTINGS = TrainSettings(epochs=4, batch_size=64, lr=2e-3, warmup=50, wd=0.1, degrade=0.7)
# Fine-tuning (stage 2) uses a smaller learning rate, as the seed did, so as not to forget stage 1, and
# one epoch: more epochs on the web-style training images fit the web domain (the seed found the same).
TINY_FINETUNE_SETTINGS = replace(TINY_SETTINGS, lr=3e-4, epochs=1)


def default_settings(model: str, pretrained: Optional[str] = None) -> TrainSettings:
    """The preset of a model: for the package's own small configs the tiny one, from scratch (no ``pretrained``)
    or fine-tuned; the seed's otherwise."""
    if is_package_config(model):
        preset = TINY_FINETUNE_SETTINGS if pretrained else TINY_SETTINGS
    else:
        preset = SEED_SETTINGS
    return TrainSettings(**{**asdict(preset), "extra": list(preset.extra)})


@dataclass(frozen=True)
class TrainJob:
    """What to train, from what, where the run goes and on what hardware."""

    train_csv: Path
    model: str = TINY_MODEL
    pretrained: Optional[str] = None  # a tag, a checkpoint file, a run folder, or None (from scratch)
    val_csv: Optional[Path] = None
    logs: Path = Path("log")
    name: str = "run"
    square_pad: bool = True
    nproc: int = 1
    device: Optional[str] = None  # None: the device policy
    resume: bool = False

    @property
    def run_dir(self) -> Path:
        return Path(self.logs) / self.name


@dataclass(frozen=True)
class TrainPlan:
    """The command that will run, the settings after the rules, and why."""

    command: list[str]
    env: dict
    settings: TrainSettings
    device: str
    estimate: Optional[MemoryEstimate]
    gpu_gib: Optional[float]
    notes: list[str]

    def describe(self) -> str:
        lines = ["command:", "  " + shlex.join(self.command)]
        if self.estimate is not None:
            lines += [f"memory estimate per GPU ({self.estimate.parameters / 1e9:.2f} B parameters, batch "
                      f"{self.settings.batch_size}, gradient checkpointing "
                      f"{'on' if self.settings.grad_checkpointing else 'off'}; GPU {self.gpu_gib:.0f} GiB):",
                      self.estimate.table()]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _gpu_gib() -> Optional[float]:
    return torch.cuda.get_device_properties(0).total_memory / GIB if torch.cuda.is_available() else None


def plan(job: TrainJob, settings: TrainSettings, dry_run: bool = False) -> TrainPlan:
    """Apply the rules of the module doc and build the command line (``dry_run``: plan for a GPU of
    ASSUMED_GPU_GIB where none is visible, instead of failing)."""
    notes: list[str] = []
    pretrained = normalise_pretrained(job.pretrained)
    if dry_run and not torch.cuda.is_available() and not is_package_config(job.model) and job.device is None:
        device = "cuda"
        notes.append(f"no GPU visible here: planned for a CUDA GPU of {ASSUMED_GPU_GIB:.0f} GiB")
    else:
        device = choose_device(job.model, job.device).type
    s = replace(settings, extra=list(settings.extra))
    s.precision = s.precision or training_precision(device)
    levers, lever_notes = resolve(Levers.parse(s.levers), torch.device(device), train=True)
    s.levers, notes = levers.describe(), notes + lever_notes
    if job.nproc > 1:
        warmup = math.ceil(settings.warmup / job.nproc)
        notes.append(f"--nproc {job.nproc}: batch {s.batch_size} per process ({s.batch_size * job.nproc} a step), "
                     f"warmup {settings.warmup} -> {warmup} steps (the seed's schedule in samples), "
                     "local loss with gathered features")
        s.warmup = warmup
    estimate, gpu_gib = None, None
    if device == "cuda":
        gpu_gib = _gpu_gib() or ASSUMED_GPU_GIB
        autocast = s.precision.startswith("amp")
        if s.grad_checkpointing is None:
            without = estimate_training_memory(job.model, s.batch_size, False, job.nproc, autocast)
            s.grad_checkpointing = without.total > MEMORY_HEADROOM * gpu_gib
            if s.grad_checkpointing:
                notes.append(f"gradient checkpointing on: {without.total:.0f} GiB estimated without it, over "
                             f"{MEMORY_HEADROOM:.0%} of {gpu_gib:.0f} GiB (it costs about 30% of the throughput)")
        estimate = estimate_training_memory(job.model, s.batch_size, bool(s.grad_checkpointing), job.nproc, autocast)
        if estimate.total > gpu_gib:
            notes.append(f"warning: {estimate.total:.0f} GiB estimated for a {gpu_gib:.0f} GiB GPU: lower --batch-size")
    args = upstream_args(job, s, pretrained, device)
    launcher = [sys.executable]
    if job.nproc > 1:
        launcher += ["-m", "torch.distributed.run", f"--nproc_per_node={job.nproc}"]
    # "--" ends torchrun's options: its parser would take the loop's --logs for its own --logs-specs
    entry = ["-m", "traffic_retrieval.training.entry", *(["--"] if job.nproc > 1 else [])]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if job.nproc > 1 and device == "cpu":
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // job.nproc)))
    return TrainPlan([*launcher, *entry, *args], env, s, device, estimate, gpu_gib, notes)


def upstream_args(job: TrainJob, s: TrainSettings, pretrained: Optional[str], device: str) -> list[str]:
    """The open_clip_train command line (plus ``--no-square-pad``, ``--degrade`` and ``--attribute-loss``, read by
    training/entry.py)."""
    args = [
        "--dataset-type", "csv", "--train-data", str(job.train_csv), "--csv-separator", "\t",
        "--csv-img-key", "filepath", "--csv-caption-key", "title",
        "--model", job.model, "--logs", str(job.logs), "--name", job.name,
        "--epochs", str(s.epochs), "--batch-size", str(s.batch_size), "--lr", str(s.lr),
        "--warmup", str(s.warmup), "--wd", str(s.wd), "--precision", str(s.precision),
        "--lr-scheduler", s.lr_scheduler, "--workers", str(s.workers), "--seed", str(s.seed),
        "--save-frequency", "1", "--delete-previous-checkpoint", "--report-to", "tensorboard",
        "--log-every-n-steps", "10", "--zeroshot-frequency", "0",
    ]
    if job.val_csv:
        args += ["--val-data", str(job.val_csv), "--val-frequency", "1"]
    if pretrained:
        args += ["--pretrained", str(pretrained)]
    if device == "cpu":
        args += ["--device", "cpu"]
    if s.grad_checkpointing:
        args.append("--grad-checkpointing")
    if job.nproc > 1:
        args += ["--local-loss", "--gather-with-grad"]
        if device == "cpu":
            args += ["--dist-backend", "gloo"]
    if job.resume:
        args += ["--resume", "latest"]
    if not job.square_pad:
        args.append("--no-square-pad")
    if s.degrade:
        args += ["--degrade", str(s.degrade)]
    if s.attribute_loss:
        args += ["--attribute-loss", str(s.attribute_loss)]
    args += train_arguments(Levers.parse(s.levers))
    return args + list(s.extra)


def shaping_parameters(job: TrainJob, p: TrainPlan) -> dict:
    """What a run's weights depend on: its data, model and starting point, and the settings as planned
    (precision, warmup); not ``workers``, gradient checkpointing or the levers, which set only speed and memory."""
    def absolute(path) -> Optional[str]:
        return str(Path(path).resolve()) if path else None

    pretrained = normalise_pretrained(job.pretrained)
    checkpoint = pretrained and Path(pretrained).is_file()  # else an OpenCLIP tag, or none
    tuned = {k: v for k, v in asdict(p.settings).items() if k not in ("workers", "grad_checkpointing", "levers")}
    return {"train_csv": absolute(job.train_csv), "val_csv": absolute(job.val_csv), "model": job.model,
            "pretrained": absolute(pretrained) if checkpoint else pretrained, "square_pad": job.square_pad,
            "processes": job.nproc, **tuned}


def relayed(command: list[str], env: dict) -> int:
    """Run ``command``, its output relayed line by line to this process's ``sys.stderr``, and return
    its exit code. In a notebook that stream is the cell's, shown once; a child writing to the
    inherited file descriptor instead was shown twice (the kernel echoes what it captures there)."""
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", bufsize=1) as child:
        for line in child.stdout:
            sys.stderr.write(line)
        return child.wait()


def final_checkpoint(logs: Path, name: str, epochs: int) -> Path:
    return Path(logs) / name / "checkpoints" / f"epoch_{epochs}.pt"


def train(job: TrainJob, settings: Optional[TrainSettings] = None) -> Path:
    """Run the upstream loop in a child process (``torchrun`` when nproc > 1); return the run folder,
    which ``--pretrained`` accepts (its latest weights and its model name)."""
    settings = settings or default_settings(job.model, normalise_pretrained(job.pretrained))
    if job.run_dir.exists() and not job.resume:
        raise TrainingError(f"run {job.run_dir} already exists: pass --resume to continue it or choose another --name")
    require_file(job.train_csv, "the training CSV that traffic-retrieval prepare writes")
    p = plan(job, settings)
    claim_run(job.run_dir, "train", shaping_parameters(job, p))
    free_gpu_memory()  # a notebook kernel may still cache the augmentation model's memory
    code = relayed(p.command, p.env)
    checkpoint = final_checkpoint(job.logs, job.name, settings.epochs)
    if code != 0:
        raise TrainingError(f"open_clip_train exited with code {code}; see {job.run_dir / 'out.log'}")
    if not checkpoint.is_file():
        raise TrainingError(f"open_clip_train exited without writing {checkpoint}: the run did not train")
    return job.run_dir
