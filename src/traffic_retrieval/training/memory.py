"""How much GPU memory a training run needs, before it starts: weights, gradients and AdamW moments in
fp32, the autocast copies of the weights, DDP's gradient buckets, and the activations kept for the
backward pass, from the model's OpenCLIP config (no weights are built: the parameter count comes from
the model built on the ``meta`` device).

Activations per token per transformer layer, in bytes, under autocast with PyTorch's fused attention
(no s x s score matrices kept): ``width * (12 + 3 * mlp_ratio)`` without gradient checkpointing; with
checkpointing, ``8 * width`` for every layer (its fp32 input and what its backward holds) and one
layer's activations during its recomputation. The form follows Korthikanti et al. 2022 ("Reducing
Activation Recomputation in Large Transformer Models": 34 bytes x width for mlp_ratio 4 in 16-bit);
the constants are calibrated on ViT-bigG-14 at batch 25 on an H200 (docs/gpu.md: 55.2 GiB peak
allocated without checkpointing, 47.7 GiB with), where the textbook constants over-estimated by
9 GiB and under-estimated by 2.4 GiB.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

GIB = 2 ** 30


@functools.lru_cache(maxsize=None)
def parameter_count(model: str) -> int:
    """Parameters of an OpenCLIP model, counted on the meta device (no memory, no weights)."""
    import open_clip

    from ..retrieval.models import register_configs

    register_configs()
    with torch.device("meta"):
        built = open_clip.create_model(model, device="meta")
    return sum(p.numel() for p in built.parameters())


def _tower(cfg: dict) -> tuple[int, int, float]:
    """(layers, width, mlp_ratio) of a tower's config."""
    return int(cfg["layers"]), int(cfg["width"]), float(cfg.get("mlp_ratio", 4.0))


def activation_bytes_per_sample(model: str, checkpointing: bool) -> float:
    """Bytes of activations one image-text pair keeps for the backward pass (see the module doc)."""
    import open_clip

    cfg = open_clip.get_model_config(model)
    if cfg is None:
        raise ValueError(f"no OpenCLIP config for {model}")
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    image_size, patch = vision["image_size"], vision["patch_size"]
    side = (image_size if isinstance(image_size, int) else image_size[0]) // patch
    towers = [(*_tower(vision), side * side + 1), (*_tower(text), int(text.get("context_length", 77)))]
    total = 0.0
    for layers, width, mlp, tokens in towers:
        full_layer = tokens * width * (12 + 3 * mlp)
        total += (layers * tokens * width * 8 + full_layer) if checkpointing else layers * full_layer
    return total


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak GPU memory of one training process, in GiB, by part."""

    parameters: int
    weights: float  # fp32 weights
    gradients: float  # fp32 gradients
    optimizer: float  # AdamW's two fp32 moments
    autocast_copies: float  # the 16-bit weight copies autocast caches during a step
    ddp_buckets: float  # DDP's gradient buckets (several processes only)
    activations: float

    @property
    def total(self) -> float:
        return (self.weights + self.gradients + self.optimizer + self.autocast_copies + self.ddp_buckets
                + self.activations)

    def table(self) -> str:
        rows = [("weights (fp32)", self.weights), ("gradients (fp32)", self.gradients),
                ("AdamW moments (fp32)", self.optimizer), ("autocast weight copies", self.autocast_copies),
                ("DDP gradient buckets", self.ddp_buckets), ("activations", self.activations),
                ("total", self.total)]
        return "\n".join(f"  {name:<24}{gib:8.1f} GiB" for name, gib in rows)


def estimate_training_memory(model: str, batch: int, checkpointing: bool, nproc: int = 1,
                             autocast: bool = True) -> MemoryEstimate:
    """The estimated peak memory of one process training ``model`` at ``batch`` samples a step."""
    n = parameter_count(model)
    return MemoryEstimate(
        parameters=n, weights=4 * n / GIB, gradients=4 * n / GIB, optimizer=8 * n / GIB,
        autocast_copies=(2 * n / GIB) if autocast else 0.0, ddp_buckets=(4 * n / GIB) if nproc > 1 else 0.0,
        activations=batch * activation_bytes_per_sample(model, checkpointing) / GIB,
    )
