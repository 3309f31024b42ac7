"""Models: one loader for every OpenCLIP model, the project's tiny CPU config, square padding.

A model is chosen by an OpenCLIP name and a ``pretrained`` value: an OpenCLIP tag such as
``laion2b_s39b_b160k`` (downloaded on a user's machine), a local checkpoint file (an
``open_clip_train`` ``epoch_N.pt`` or a plain state dict), or none (random initialisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import open_clip
import torch
from torchvision.transforms import Compose

from ..core.images import SquarePad, to_rgb
from .configs import CONFIG_DIR, TINY_MODEL
from .device import Placement, place


_registered = False


def register_configs() -> None:
    """Make the package's model configs (the tiny one) known to open_clip, once per process."""
    global _registered
    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The highest ``epoch_N.pt`` of a training run folder (``log/<run>``)."""
    found = sorted(Path(run_dir).glob("checkpoints/epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    if not found:
        raise FileNotFoundError(f"no checkpoints/epoch_N.pt in run folder {run_dir}")
    return found[-1]


def normalise_pretrained(pretrained: Optional[str | Path]) -> Optional[str]:
    """None for random initialisation ("", "none", None); a training run folder gives its latest
    checkpoint; a checked path for a local file; else an OpenCLIP tag."""
    if pretrained is None or str(pretrained).strip().lower() in ("", "none", "random"):
        return None
    if Path(pretrained).is_dir():
        return str(latest_checkpoint(pretrained))
    pretrained = str(pretrained)
    looks_like_path = any(s in pretrained for s in ("/", "\\")) or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
    if looks_like_path and not Path(pretrained).is_file():
        raise FileNotFoundError(f"checkpoint not found: {pretrained}")
    return pretrained


def with_square_pad(transform: Compose, square_pad: bool = True) -> Compose:
    """An OpenCLIP transform with RGB conversion (and square padding) in front: the same
    function serves training, augmentation and inference."""
    return Compose([to_rgb, *([SquarePad()] if square_pad else []), *transform.transforms])


@dataclass(frozen=True)
class ModelSettings:
    """Which model, and how its images are prepared; ``device`` None: the policy's choice (device.py)."""

    name: str = TINY_MODEL
    pretrained: Optional[str] = None  # an OpenCLIP tag, a checkpoint file, a run folder, or None (random)
    square_pad: bool = True
    device: Optional[str] = None


@dataclass
class LoadedModel:
    name: str
    pretrained: Optional[str]
    model: torch.nn.Module
    preprocess: Callable  # image -> tensor, square padding included when asked
    tokenizer: Callable
    placement: Placement
    square_pad: bool = True

    @property
    def device(self) -> torch.device:
        return self.placement.device

    @property
    def precision(self) -> str:
        return self.placement.precision

    def autocast(self):
        return self.placement.autocast()


def load_model(settings: ModelSettings = ModelSettings()) -> LoadedModel:
    """Build an OpenCLIP model in eval mode, on the policy's device, with its inference transform and
    tokenizer. Weights stay fp32; on CUDA the forward passes run under autocast (``LoadedModel.autocast``)."""
    register_configs()
    placement = place(settings.name, settings.device)
    pretrained = normalise_pretrained(settings.pretrained)
    model, _, preprocess = open_clip.create_model_and_transforms(
        settings.name, pretrained=pretrained, device=placement.device, precision="fp32"
    )
    model.eval()
    return LoadedModel(settings.name, pretrained, model, with_square_pad(preprocess, settings.square_pad),
                       open_clip.get_tokenizer(settings.name), placement, settings.square_pad)
