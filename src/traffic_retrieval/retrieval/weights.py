"""Where a model's weights come from: an OpenCLIP tag, a checkpoint file, or a training run folder,
and the weights-only export a training run writes for inference.

A run folder (``log/<run>``, as ``traffic-retrieval train`` writes it) names its model in
``params.txt`` and holds ``weights/epoch_N.safetensors``: the weights alone, in the inference
precision of the device that trained them (bf16 on a GPU, fp32 on a CPU), about 5 GB for
ViT-bigG-14 where the full ``checkpoints/epoch_N.pt`` (fp32 weights and AdamW moments) is about
30 GB. Inference reads the export; only ``--resume`` reads the full checkpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import torch

from ..core.fileio import UserError, atomic_path

EXPORT_DIR, CHECKPOINT_DIR = "weights", "checkpoints"
_EPOCH = re.compile(r"epoch_(\d+)\.(pt|safetensors)$")


def _latest(folder: Path, suffix: str) -> Optional[Path]:
    found = [(int(m.group(1)), p) for p in folder.glob(f"epoch_*.{suffix}") if (m := _EPOCH.search(p.name))]
    return max(found)[1] if found else None


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The file inference reads from a run folder: the latest weights-only export, else the latest
    full checkpoint (a run of an older version, or one interrupted before its export)."""
    run_dir = Path(run_dir)
    found = _latest(run_dir / EXPORT_DIR, "safetensors") or _latest(run_dir / CHECKPOINT_DIR, "pt")
    if found is None:
        raise FileNotFoundError(f"no {EXPORT_DIR}/epoch_N.safetensors or {CHECKPOINT_DIR}/epoch_N.pt in run folder "
                                f"{run_dir}: has it finished an epoch?")
    return found


def run_of(path: Path) -> Optional[Path]:
    """The training run folder of ``path``: the folder itself, or the run holding a checkpoint or export."""
    for candidate in (path, path.parent.parent):
        if (candidate / "params.txt").is_file():
            return candidate
    return None


def run_model(run: Path) -> Optional[str]:
    """The model a run trained, from the ``model:`` line of its ``params.txt``."""
    for line in (run / "params.txt").read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition(": ")
        if key.strip() == "model":
            return value.strip()
    return None


def export_model(path: Path) -> Optional[str]:
    """The model a weights-only export names in its metadata."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return (f.metadata() or {}).get("model")


@dataclass(frozen=True)
class Weights:
    """A resolved ``pretrained`` value: a tag or a file to load (None: random initialisation), and the
    model that wrote the file where it says so."""

    source: Optional[str]
    is_file: bool = False
    model: Optional[str] = None

    def describe(self) -> str:
        return self.source or "random initialisation"


def resolve_weights(pretrained: Optional[str | Path]) -> Weights:
    """None, "" or "none": random weights; a run folder: its latest export (or checkpoint) and the run's
    model; an existing file: itself (with the model its run or metadata names); else an OpenCLIP tag.
    A value that looks like a path but names no file is a FileNotFoundError."""
    if pretrained is None or str(pretrained).strip().lower() in ("", "none", "random"):
        return Weights(None)
    path = Path(pretrained)
    if path.is_dir():
        run = run_of(path)
        return Weights(str(latest_checkpoint(path)), True, run_model(run) if run else None)
    if path.is_file():
        run = run_of(path.resolve())
        model = run_model(run) if run else None
        if model is None and path.suffix == ".safetensors":
            try:
                model = export_model(path)
            except Exception:  # not an export: loading will say what is wrong
                model = None
        return Weights(str(path), True, model)
    text = str(pretrained)
    if any(s in text for s in ("/", "\\")) or text.endswith((".pt", ".pth", ".bin", ".safetensors")):
        raise FileNotFoundError(f"checkpoint not found: {text}")
    return Weights(text)


def normalise_pretrained(pretrained: Optional[str | Path]) -> Optional[str]:
    """The tag or file a ``pretrained`` value stands for (None: random initialisation)."""
    return resolve_weights(pretrained).source


def model_name(requested: Optional[str], weights: Weights, default: str) -> str:
    """The model to build: the one the weights' run names, which an explicit ``--model`` must match."""
    if requested and weights.model and requested != weights.model:
        raise UserError(f"--model {requested} but {weights.source} was trained as {weights.model}: "
                        f"leave --model out (the run names its model) or pass --model {weights.model}")
    return requested or weights.model or default


def export_weights(state_dict: Mapping[str, torch.Tensor], path: Path, model: str, epoch: int, dtype: torch.dtype) -> Path:
    """Write the weights alone (``dtype`` for floating tensors) as safetensors, atomically."""
    from safetensors.torch import save_file

    tensors = {k.removeprefix("module."): (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu())
               .contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"model": model, "epoch": str(epoch), "dtype": str(dtype)})
    return path
