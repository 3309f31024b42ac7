"""Image files: which files of a folder are images, how one is read, and the square padding.

PIL only (no torch), so that listing a gallery or checking a submission's names stays cheap;
the same ``to_rgb`` and ``SquarePad`` serve training, augmentation, inference and the figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def is_image_name(name: str) -> bool:
    return name.strip().lower().endswith(IMAGE_SUFFIXES)


def list_images(folder: str | Path) -> list[Path]:
    """The images of a folder, sorted by name (the gallery order everywhere)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if is_image_name(p.name))


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


def why_unreadable(path: str | Path) -> Optional[str]:
    """None when PIL opens and decodes the image, else why not."""
    try:
        with Image.open(path) as im:
            im.load()
        return None
    except Exception as e:
        return str(e) or type(e).__name__


def unreadable_summary(paths: Sequence[Path], ok: np.ndarray, what: str = "images", shown: int = 10) -> Optional[str]:
    """'2 of 500 images unreadable, skipped: PATH, PATH', or None when every image was read."""
    bad = [str(paths[i]) for i in np.flatnonzero(~np.asarray(ok, bool))]
    if not bad:
        return None
    more = f", and {len(bad) - shown} more (each logged when encoded)" if len(bad) > shown else ""
    return f"{len(bad)} of {len(paths)} {what} unreadable, skipped: {', '.join(bad[:shown])}{more}"


def image_kind(path: str | Path) -> str:
    """"vehicle" for a wide (or square) image, "pedestrian" for a tall one (vehicle crops are wide,
    pedestrian crops tall, in the challenge data as in the synthetic one); reads only the header."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception:  # unreadable images are masked by ``ok`` anyway
        return "vehicle"
    return "vehicle" if w >= h else "pedestrian"
