"""Models: one loader for every OpenCLIP model, the project's tiny CPU config, square padding.

A model is chosen by an OpenCLIP name and a ``pretrained`` value: an OpenCLIP tag such as
``laion2b_s39b_b160k`` (downloaded on a user's machine), a local checkpoint file (an
``open_clip_train`` ``epoch_N.pt``, a weights-only export or a plain state dict), a training run
folder (its latest export, and its model name), or none (random initialisation). Every way a
loading can fail on the user's side (unknown model or tag, no network, a truncated or foreign
file, another architecture's weights) is a one-line UserError, not a traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import open_clip
import torch
from torchvision.transforms import Compose

from ..core.fileio import InputError, UserError
from ..core.images import SquarePad, to_rgb
from .configs import CONFIG_DIR, TINY_MODEL
from .device import Placement, place
from .levers import Levers, compile_towers
from .weights import Weights, model_name, resolve_weights


_registered = False


def register_configs() -> None:
    """Make the package's model configs (the tiny one) known to open_clip, once per process."""
    global _registered
    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def with_square_pad(transform: Compose, square_pad: bool = True, degrade: Optional[Callable] = None) -> Compose:
    """An OpenCLIP transform with RGB conversion (and square padding) in front: the same
    function serves training, augmentation and inference. ``degrade`` (training only) alters the
    crop before it is padded, as a camera would (training/degrade.py)."""
    return Compose([to_rgb, *([degrade] if degrade else []), *([SquarePad()] if square_pad else []),
                    *transform.transforms])


@dataclass(frozen=True)
class ModelSettings:
    """Which model, and how its images are prepared; ``device`` None: the policy's choice (device.py)."""

    name: Optional[str] = None  # None: the model a run folder names, else the tiny one
    pretrained: Optional[str] = None  # an OpenCLIP tag, a checkpoint file, a run folder, or None (random)
    square_pad: bool = True
    device: Optional[str] = None
    levers: Levers = Levers()  # GPU levers asked for (retrieval/levers.py; those that cannot run are dropped)


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

    @property
    def logit_scale(self) -> float:
        """The learned temperature that turns a cosine similarity into CLIP's logit."""
        return float(self.model.logit_scale.detach().exp())


def _check_known(name: str, weights: Weights) -> None:
    if name not in open_clip.list_models():
        raise UserError(f"unknown model {name!r}: not an OpenCLIP model name (see open_clip.list_models(); "
                        f"the package's own: {TINY_MODEL})")
    if weights.source and not weights.is_file and not open_clip.get_pretrained_cfg(name, weights.source):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise UserError(f"--pretrained {weights.source!r} is neither a file nor a pretrained tag of {name} "
                        f"(its tags: {tags})")


def _load_file(model: torch.nn.Module, path: str, name: str) -> None:
    """Load a checkpoint or export into ``model``, naming the file and what is wrong with it."""
    try:
        open_clip.load_checkpoint(model, path, strict=True)
    except RuntimeError as e:
        text = str(e)
        if "Error(s) in loading state_dict" in text:
            detail = next((line.strip() for line in text.splitlines()[1:] if line.strip()), "")[:160]
            raise InputError(path, None, f"holds weights of another model than {name} ({detail}): pass the "
                                         f"--model that wrote it") from None
        raise InputError(path, None, f"not a readable checkpoint, truncated or corrupt ({text[:120]})") from None
    except Exception as e:  # pickle, zip, safetensors and key errors of a foreign file
        raise InputError(path, None, f"not a checkpoint ({type(e).__name__}: {str(e)[:120]})") from None


class _LoadedLater(logging.Filter):
    """Hides OpenCLIP's "initialized randomly" warning for a model whose weights load right after."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


def load_model(settings: ModelSettings = ModelSettings()) -> LoadedModel:
    """Build an OpenCLIP model in eval mode, on the policy's device, with its inference transform and
    tokenizer. Weights stay fp32; on CUDA the forward passes run under autocast (``LoadedModel.autocast``).
    The model is built directly on its device (ViT-bigG-14 never takes a 10 GB detour through the CPU)."""
    register_configs()
    weights = resolve_weights(settings.pretrained)
    name = model_name(settings.name, weights, TINY_MODEL)
    _check_known(name, weights)
    placement = place(name, settings.device, settings.levers)
    tag = None if weights.is_file else weights.source
    quiet = _LoadedLater()
    if weights.is_file:
        logging.getLogger().addFilter(quiet)
    try:
        with torch.device(placement.device):
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=tag, device=placement.device, precision="fp32")
    except RuntimeError as e:
        if tag and "Failed to download" in str(e):
            raise UserError(f"could not download the {tag} weights of {name} (no network?): download them where "
                            f"there is a network and pass the file as --pretrained") from None
        raise
    finally:
        logging.getLogger().removeFilter(quiet)
    if weights.is_file:
        _load_file(model, weights.source, name)
    model.eval()
    if placement.levers.compile:
        compile_towers(model, placement.levers)
    return LoadedModel(name, weights.source, model, with_square_pad(preprocess, settings.square_pad),
                       open_clip.get_tokenizer(name), placement, settings.square_pad)
