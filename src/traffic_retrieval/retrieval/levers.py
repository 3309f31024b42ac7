"""GPU levers: switches of the device policy that may bring ViT-bigG-14 closer to a GPU's peak.

Every lever is off by default: none has been measured on a GPU since it was built (docs/gpu.md), and an
unmeasured default is a guess. ``--levers compile,gpu-decode`` (or ``all``) turns them on by name; one
that cannot run where the model is placed is turned off with a line saying why, never silently.

- ``compile``: ``torch.compile`` of the towers' ``encode_image`` and ``encode_text`` (infer, index,
  search, serve, augment) and the upstream loop's own ``--torchcompile`` (train).
- ``cuda-graphs``: compile's "reduce-overhead" mode, which replays CUDA graphs (inference; needs compile).
- ``gpu-decode``: the loader workers read the files' bytes; JPEG decoding (``torchvision.io.decode_jpeg``
  on CUDA), square padding, resizing and normalisation run on the GPU (retrieval/decode.py).
- ``fused-adamw``: the upstream loop's AdamW built with ``fused=True`` (train).

Attention through ``F.scaled_dot_product_attention`` is not a lever: OpenCLIP 3.3.0's blocks call
``nn.MultiheadAttention`` with ``need_weights=False``, which already runs through it (tests/test_levers.py).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from dataclasses import dataclass, fields, replace

import torch

from ..core.fileio import UserError

log = logging.getLogger(__name__)

NAMES = ("compile", "cuda-graphs", "gpu-decode", "fused-adamw")


@dataclass(frozen=True)
class Levers:
    compile: bool = False
    cuda_graphs: bool = False
    gpu_decode: bool = False
    fused_adamw: bool = False

    @classmethod
    def parse(cls, text: str | None) -> "Levers":
        """``none`` (or empty), ``all``, or a comma-separated list of NAMES."""
        text = (text or "none").strip()
        names = NAMES if text == "all" else () if text == "none" else tuple(n.strip() for n in text.split(","))
        unknown = [n for n in names if n not in NAMES]
        if unknown:
            raise UserError(f"--levers: unknown {', '.join(unknown)} (choose none, all, or some of {', '.join(NAMES)})")
        return cls(**{n.replace("-", "_"): True for n in names})

    def names(self) -> list[str]:
        return [f.name.replace("_", "-") for f in fields(self) if getattr(self, f.name)]

    def describe(self) -> str:
        return ", ".join(self.names()) or "none"


def compiler_missing(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot generate code for ``device``, or None."""
    if device.type == "cuda":
        return None if importlib.util.find_spec("triton") else "torch.compile on CUDA needs triton, not installed"
    return None if shutil.which("c++") or shutil.which("g++") else "torch.compile on a CPU needs a C++ compiler (none on PATH)"


def resolve(levers: Levers, device: torch.device, train: bool = False) -> tuple[Levers, list[str]]:
    """The levers that run on ``device`` (for training when ``train``), and one line for each turned off."""
    off: dict[str, str] = {}
    cuda = device.type == "cuda"
    if levers.compile and (why := compiler_missing(device)):
        off["compile"] = why
    if levers.cuda_graphs:
        if train:
            off["cuda_graphs"] = "inference only (the upstream loop compiles in its default mode)"
        elif not cuda:
            off["cuda_graphs"] = "CUDA graphs need a CUDA device"
        elif not levers.compile or "compile" in off:
            off["cuda_graphs"] = "a mode of compile, which is off"
    if levers.gpu_decode:
        if train:
            off["gpu_decode"] = "inference only (the upstream loop reads its images with PIL)"
        elif not cuda:
            off["gpu_decode"] = "decoding on the GPU needs a CUDA device (the PIL loader runs)"
    if levers.fused_adamw and not train:
        off["fused_adamw"] = "training only"
    notes = [f"lever {name.replace('_', '-')} off: {why}" for name, why in off.items()]
    return replace(levers, **{name: False for name in off}), notes


def apply_resolved(levers: Levers, device: torch.device, train: bool = False) -> Levers:
    """``resolve``, logging each lever turned off and the ones that apply (when any was asked for)."""
    effective, notes = resolve(levers, device, train)
    for note in notes:
        log.warning(note)
    if levers.names():
        log.warning("GPU levers on: %s", effective.describe())
    return effective


def compile_towers(model: torch.nn.Module, levers: Levers) -> None:
    """Compile the model's ``encode_image`` and ``encode_text`` in place (the module and its weights are
    unchanged: ``state_dict`` keys, the cross-encoder's intermediates and saving all see the eager model)."""
    mode = "reduce-overhead" if levers.cuda_graphs else None
    model.encode_image = torch.compile(model.encode_image, mode=mode)
    model.encode_text = torch.compile(model.encode_text, mode=mode)


def train_arguments(levers: Levers) -> list[str]:
    """The entry point's options for resolved training levers (``--torchcompile`` is the upstream loop's)."""
    return (["--torchcompile"] if levers.compile else []) + (["--fused-adamw"] if levers.fused_adamw else [])
