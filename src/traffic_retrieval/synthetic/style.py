"""The look shared by every synthetic image: colours, lighting, backgrounds, and the two styles that
make the challenge's domain shift: ``"web"`` (clean, bright) for training and ``"surveillance"``
(dark, colour cast, noise, blur, low resolution, road clutter) for the test gallery.
Only PIL primitives and vectorised numpy: no pixel loops.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Style = Literal["web", "surveillance"]
STYLES: tuple[Style, ...] = ("web", "surveillance")
RGB = tuple[int, int, int]

COLOUR_RGB: dict[str, RGB] = {
    "black": (28, 28, 32),
    "blue": (30, 80, 200),
    "brown": (115, 70, 35),
    "green": (35, 150, 60),
    "grey": (135, 135, 135),
    "orange": (245, 130, 20),
    "pink": (245, 145, 190),
    "purple": (120, 45, 160),
    "red": (205, 25, 30),
    "white": (245, 245, 245),
    "yellow": (245, 215, 25),
}  # the 11 colour names of the challenge's vocabulary


def shade(c: Sequence[float], k: float) -> RGB:
    """Colour ``c`` scaled by ``k`` (k > 1 lightens towards white)."""
    if k <= 1:
        return tuple(int(max(0, v * k)) for v in c)
    return tuple(int(min(255, v + (255 - v) * (k - 1))) for v in c)


def lit(c: RGB, rng: np.random.Generator, spread: float = 0.12) -> RGB:
    """Colour ``c`` under random lighting: a gain and a small per-channel tint."""
    gain = rng.uniform(1 - spread, 1 + spread) * (1 + rng.normal(0, 0.04, 3))
    return tuple(int(v) for v in np.clip(np.asarray(c) * gain, 0, 255))


def background(w: int, h: int, style: Style, rng: np.random.Generator) -> Image.Image:
    """Web: a pale two-tone gradient. Surveillance: grey asphalt, darker at the top."""
    if style == "web":
        top, bottom = rng.uniform(185, 250, 3), rng.uniform(170, 245, 3)
    else:
        g = rng.uniform(70, 120)
        top, bottom = g * rng.uniform(0.85, 1.0, 3), g * rng.uniform(1.0, 1.2, 3)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    arr = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3))
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def clutter(d: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator, vertical: bool) -> None:
    """Road clutter of surveillance crops: lane marks and other road users cut by the crop edge."""
    for _ in range(rng.integers(1, 3)):
        col = (230, 230, 220) if rng.random() < 0.7 else (225, 190, 40)
        lw = max(2, round(min(w, h) * rng.uniform(0.03, 0.06)))
        if vertical:
            x = rng.uniform(0, w)
            for y in np.arange(rng.uniform(-h / 4, 0), h, h / 3):
                d.line([(x, y), (x + rng.uniform(-3, 3), y + h / 6)], fill=col, width=lw)
        else:
            y = rng.uniform(h * 0.55, h)
            for x in np.arange(rng.uniform(-w / 4, 0), w, w / 3):
                d.line([(x, y), (x + w / 6, y + rng.uniform(-2, 2))], fill=col, width=lw)
    for _ in range(rng.integers(0, 3)):
        col = tuple(int(c) for c in rng.integers(20, 200, 3))
        side = rng.integers(4)
        a, b = sorted(rng.uniform(0, 1, 2))
        depth = rng.uniform(0.06, 0.18)
        box = {
            0: (-5, a * h, depth * w, b * h + 5),
            1: ((1 - depth) * w, a * h, w + 5, b * h + 5),
            2: (a * w, -5, b * w + 5, depth * h),
            3: (a * w, (1 - depth) * h, b * w + 5, h + 5),
        }[int(side)]
        d.rectangle(box, fill=col)


def finish(img: Image.Image, style: Style, rng: np.random.Generator) -> Image.Image:
    """Web images stay clean; surveillance ones get the camera's colour cast, noise, blur and low resolution."""
    if style == "web":
        return img
    w, h = img.size
    f = rng.uniform(1.5, 2.5)
    img = img.resize((max(8, round(w / f)), max(8, round(h / f))), Image.BILINEAR)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    arr = np.asarray(img, dtype=np.float32)
    cast = rng.uniform(0.5, 0.85) * (1 + rng.normal(0, 0.1, 3))  # dark, with a colour cast
    arr = arr * cast + rng.uniform(-5, 25) + rng.normal(0, rng.uniform(3, 9), arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return img.resize((w, h), Image.BILINEAR)
