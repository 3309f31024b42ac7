"""Image files: which files of a folder are images, how one is read, and the square padding.

PIL only (no torch), so that listing a gallery or checking a submission's names stays cheap;
the same ``to_rgb`` and ``SquarePad`` serve training, augmentation, inference and the figures.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_NOT_REGULAR = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))


def is_image_name(name: str) -> bool:
    return name.strip().lower().endswith(IMAGE_SUFFIXES)


class NotRegularFile(OSError):
    """An image path that is not a regular file (through its links): never opened, since opening a
    named pipe waits for a writer forever and a device can stream without end."""


def why_not_regular(path: str | Path) -> Optional[str]:
    """None for a regular file (a symbolic link is followed), else what the path is instead."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a dangling symbolic link" if os.path.islink(path) else "missing"
    except OSError as e:
        return f"not readable ({e.strerror})"
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _NOT_REGULAR if test(mode)), "not a regular file")


def open_image(path: str | Path) -> Image.Image:
    """``Image.open`` of a regular file; NotRegularFile, before anything opens it, for any other path."""
    why = why_not_regular(path)
    if why is not None:
        raise NotRegularFile(f"{why}, not an image file")
    return Image.open(path)


def scan_images(folder: str | Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(the image files of a folder sorted by name: the gallery order everywhere; the entries with an
    image name that are not regular files, each with what it is). No file is opened: a directory
    entry's own type is read, and a symbolic link is followed only to see what it points to."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    images, skipped = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if not is_image_name(entry.name):
                continue
            if entry.is_file():  # a regular file, or a link to one
                images.append(Path(entry.path))
            else:
                skipped.append((Path(entry.path), why_not_regular(entry.path) or "not a regular file"))
    return sorted(images), sorted(skipped)


def skipped_summary(skipped: Sequence[tuple[Path, str]], shown: int = 10) -> Optional[str]:
    """'3 entries skipped, not regular files: PATH (a named pipe (FIFO)), ...', or None when there are none."""
    if not skipped:
        return None
    more = f", and {len(skipped) - shown} more" if len(skipped) > shown else ""
    listed = ", ".join(f"{path} ({why})" for path, why in skipped[:shown])
    return f"{len(skipped)} {'entry' if len(skipped) == 1 else 'entries'} skipped, not regular files: {listed}{more}"


def list_images(folder: str | Path) -> list[Path]:
    """The image files of a folder, sorted by name; entries that are not regular files are left out
    and logged with what they are (``scan_images``)."""
    images, skipped = scan_images(folder)
    if skipped:
        log.warning(skipped_summary(skipped))
    return images


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
    with open_image(path) as im:
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
        with open_image(path) as im:
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
        with open_image(path) as im:
            w, h = im.size
    except Exception:  # unreadable images are masked by ``ok`` anyway
        return "vehicle"
    return "vehicle" if w >= h else "pedestrian"
