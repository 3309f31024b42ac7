"""Camera degradation as a training augmentation: the web -> surveillance shift, simulated.

The training images are clean web photos and the gallery is surveillance-camera crops: darker, with
the camera's white balance, sensor noise, blur, low resolution and JPEG artefacts. ``Degrade`` draws
each of these at random on a training crop (before square padding, where a camera would), so the
model learns features that survive them. It never rotates hue or swaps channels: a white-balance
gain of a few percent per channel leaves a "red" car red, a hue shift would make its label wrong.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class Degradation:
    """The ranges each degradation is drawn from (uniformly), and how often an image is degraded."""

    probability: float = 0.7  # share of training images degraded; the others stay clean
    gain: tuple[float, float] = (0.4, 1.0)  # exposure: low light
    white_balance: float = 0.1  # std of the per-channel gain around 1
    black_level: tuple[float, float] = (-10.0, 25.0)  # added to every channel (lifted blacks)
    noise: tuple[float, float] = (0.0, 10.0)  # std of Gaussian sensor noise, in 8-bit levels
    blur: tuple[float, float] = (0.0, 1.0)  # Gaussian blur radius, in pixels of the crop
    downscale: tuple[float, float] = (1.0, 3.0)  # the crop is shrunk by this factor and enlarged back
    jpeg: tuple[int, int] = (30, 95)  # JPEG quality


class Degrade:
    """A transform (PIL RGB image -> PIL RGB image) applying a random camera degradation.

    Its random numbers come from torch's generator, which the DataLoader seeds differently in each
    worker (a numpy generator would be copied into every worker and repeat the same draws)."""

    def __init__(self, settings: Degradation = Degradation()):
        self.s = settings

    def __call__(self, img: Image.Image) -> Image.Image:
        s = self.s
        rng = np.random.default_rng(int(torch.randint(2 ** 62, ())))
        if rng.random() >= s.probability:
            return img
        w, h = img.size
        f = rng.uniform(*s.downscale)
        if f > 1.05:
            img = img.resize((max(8, round(w / f)), max(8, round(h / f))), Image.BILINEAR)
        radius = rng.uniform(*s.blur)
        if radius > 0.1:
            img = img.filter(ImageFilter.GaussianBlur(radius))
        arr = np.asarray(img, dtype=np.float32)
        gain = rng.uniform(*s.gain) * (1 + rng.normal(0, s.white_balance, 3))
        arr = arr * gain + rng.uniform(*s.black_level) + rng.normal(0, rng.uniform(*s.noise), arr.shape)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").resize((w, h), Image.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(s.jpeg[0], s.jpeg[1] + 1)))
        buf.seek(0)
        with Image.open(buf) as out:
            return out.convert("RGB")

    def __repr__(self) -> str:
        return f"Degrade({self.s})"
