"""The uint8 loader path (lever ``gpu-decode``): workers read bytes, the model's device does the rest.

On a GPU the PIL transform (decode, square padding, bicubic resize, normalisation) costs the gallery
encoder about a fifth of its rate (docs/gpu.md). Here the workers only read each file; a batch of
JPEGs is decoded on the model's device by ``torchvision.io.decode_jpeg`` (other formats on the CPU by
``decode_image``), padded to a centred square with zeros and resized with antialiased bicubic
interpolation there, as ``core.images.SquarePad`` and OpenCLIP's transform do on the CPU (EXIF rotation
applied and transparency flattened on black, as ``core.images.ToRGB`` does). The result matches the PIL
path within resampling differences (tests/test_levers.py).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import CenterCrop, Compose, Normalize, Resize

from ..core.fileio import UserError
from ..core.images import open_image

log = logging.getLogger(__name__)
JPEG_MAGIC = b"\xff\xd8"


@dataclass(frozen=True)
class TensorTransform:
    """What OpenCLIP's eval transform does, as tensor operations: square padding, a resize of the
    shorter side to ``size`` and a centre crop (one square resize after padding), normalisation."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    square_pad: bool = True

    @classmethod
    def of(cls, preprocess: Compose, square_pad: bool) -> "TensorTransform":
        """Read from a project transform (``models.with_square_pad``); a UserError where it holds a step
        that has no tensor counterpart here."""
        resize = next((t for t in preprocess.transforms if isinstance(t, Resize)), None)
        norm = next((t for t in preprocess.transforms if isinstance(t, Normalize)), None)
        crop = next((t for t in preprocess.transforms if isinstance(t, CenterCrop)), None)
        size = resize.size if resize is not None else None
        size = size[0] if isinstance(size, (list, tuple)) and len(size) == 1 else size
        if not isinstance(size, int) or norm is None or (crop is not None and tuple(crop.size) != (size, size)):
            raise UserError(f"gpu-decode: the model's transform has no tensor counterpart ({preprocess})")
        return cls(size, tuple(norm.mean), tuple(norm.std), square_pad)

    def __call__(self, image: torch.Tensor, flip: bool = False) -> torch.Tensor:
        """One uint8 image (3, h, w) on any device -> the normalised float (3, size, size) the tower reads."""
        x = image.float()
        if flip:
            x = x.flip(-1)
        _, h, w = x.shape
        if self.square_pad and w != h:
            side = max(w, h)
            left, top = (side - w) // 2, (side - h) // 2
            x = F.pad(x, (left, side - w - left, top, side - h - top))
        h, w = x.shape[-2:]
        # torchvision's Resize(int) and CenterCrop: the longer side truncated, the crop's offset rounded
        out = (self.size, int(self.size * w / h)) if h <= w else (int(self.size * h / w), self.size)
        x = F.interpolate(x[None], size=out, mode="bicubic", antialias=True, align_corners=False)[0]
        top, left = round((out[0] - self.size) / 2), round((out[1] - self.size) / 2)
        x = x[:, top:top + self.size, left:left + self.size].clamp(0, 255) / 255.0
        mean = torch.tensor(self.mean, device=x.device)[:, None, None]
        std = torch.tensor(self.std, device=x.device)[:, None, None]
        return (x - mean) / std


class FileBytes(Dataset):
    """(uint8 bytes, readable, the header's (width, height)) per path: all a loader worker does on this
    path (the size is the header's, as the PIL path and ``core.images.image_kind`` read it)."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            with open_image(self.paths[i]) as im:  # a regular file only (a FIFO would block a read)
                size = im.size
            data = Path(self.paths[i]).read_bytes()
            return torch.frombuffer(bytearray(data), dtype=torch.uint8), True, size
        except Exception as e:  # any reader or header error: reported by path, never fatal here
            log.warning("unreadable image %s: %s", self.paths[i], e)
            return torch.zeros(0, dtype=torch.uint8), False, (0, 0)


def _decode_one(data: torch.Tensor, device: torch.device) -> Optional[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    try:
        if bytes(data[:2].tolist()) == JPEG_MAGIC:
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
        rgba = decode_image(data, mode=ImageReadMode.RGB_ALPHA, apply_exif_orientation=True).to(device)
        # transparency flattened on black, as core.images.ToRGB does
        return (rgba[:3].float() * rgba[3:].float() / 255.0).round().to(torch.uint8)
    except RuntimeError:
        return None


def decode_batch(raw: list[tuple[torch.Tensor, bool, tuple[int, int]]], transform: TensorTransform, device: torch.device,
                 flip: bool = False, paths: Sequence[Path] = ()) -> tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor]:
    """(images on ``device``, readable mask, (width, height) sizes) of one batch of ``FileBytes`` items:
    the JPEGs decoded together (one call on CUDA), the rest one by one; an undecodable file is
    ok=False with size 0 x 0, as on the PIL path."""
    from torchvision.io import ImageReadMode, decode_jpeg

    decoded: list[Optional[torch.Tensor]] = [None] * len(raw)
    jpegs = [i for i, (data, ok, _) in enumerate(raw) if ok and bytes(data[:2].tolist()) == JPEG_MAGIC]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TorchCodec.*")  # torchvision 0.29 deprecates its decoders
        try:
            for i, image in zip(jpegs, decode_jpeg([raw[i][0] for i in jpegs], mode=ImageReadMode.RGB, device=device,
                                                      apply_exif_orientation=True)
                                if jpegs else []):
                decoded[i] = image
        except RuntimeError:  # one bad file fails the whole call: find it one by one
            for i in jpegs:
                decoded[i] = _decode_one(raw[i][0], device)
        for i, (data, ok, _) in enumerate(raw):
            if ok and decoded[i] is None and i not in jpegs:
                decoded[i] = _decode_one(data, device)
    for i, image in enumerate(decoded):
        if image is None and raw[i][1]:
            log.warning("unreadable image %s: not a decodable image", paths[i] if i < len(paths) else f"#{i}")
    ok = torch.tensor([image is not None for image in decoded])
    sizes = torch.tensor([raw[i][2] if im is not None else (0, 0) for i, im in enumerate(decoded)],
                         dtype=torch.int32).reshape(len(raw), 2)
    if not ok.any():
        return None, ok, sizes
    images = [transform(im, flip) if im is not None else None for im in decoded]
    blank = torch.zeros_like(next(im for im in images if im is not None))
    return torch.stack([im if im is not None else blank for im in images]), ok, sizes


def collate_bytes(batch: list) -> list:
    return batch

