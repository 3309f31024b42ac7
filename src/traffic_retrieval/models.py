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
from PIL import Image, ImageOps
from torchvision.transforms import Compose

CONFIG_DIR = Path(__file__).with_name("model_configs")
TINY_MODEL = "TR-ViT-Tiny"  # 64 px ViT, trains from scratch on 2 CPUs in minutes
BIG_MODEL, BIG_PRETRAINED = "ViT-bigG-14", "laion2b_s39b_b160k"  # the seed's backbone

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


class ToRGB:
    """EXIF rotation applied, transparency flattened on black, any mode (L, CMYK, P...) to RGB."""

    def __call__(self, image: Image.Image) -> Image.Image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "P", "PA"):
            image = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", image.size, (0, 0, 0, 255)), image)
        return image.convert("RGB")

    def __repr__(self) -> str:  # stable across processes: part of the embedding cache key
        return "ToRGB()"


to_rgb = ToRGB()


def load_image(path: str | Path) -> Image.Image:
    with Image.open(path) as im:
        return to_rgb(im)


class SquarePad:
    """Pad with zeros to a centred square: the seed's fix for wide vehicles and tall pedestrians,
    which a centre crop would cut and a squash would distort."""

    def __call__(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        if w == h:
            return image
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), (0, 0, 0))
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        return canvas

    def __repr__(self) -> str:
        return "SquarePad()"


def with_square_pad(transform: Compose, square_pad: bool = True) -> Compose:
    """An OpenCLIP transform with RGB conversion (and square padding) in front: the same
    function serves training, augmentation and inference."""
    return Compose([to_rgb, *([SquarePad()] if square_pad else []), *transform.transforms])


@dataclass
class LoadedModel:
    name: str
    pretrained: Optional[str]
    model: torch.nn.Module
    preprocess: Callable  # image -> tensor, square padding included when asked
    tokenizer: Callable
    device: torch.device


def load_model(
    name: str = TINY_MODEL,
    pretrained: Optional[str] = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    square_pad: bool = True,
) -> LoadedModel:
    """Build an OpenCLIP model in eval mode with its inference transform and tokenizer."""
    register_configs()
    pretrained = normalise_pretrained(pretrained)
    model, _, preprocess = open_clip.create_model_and_transforms(
        name, pretrained=pretrained, device=device, precision=precision
    )
    model.eval()
    return LoadedModel(
        name, pretrained, model, with_square_pad(preprocess, square_pad), open_clip.get_tokenizer(name), torch.device(device)
    )
