"""Encoding: gallery images in batches through DataLoader workers, query texts once each.

Embeddings are L2-normalised float32 rows. An image that cannot be read gives a zero row and
``ok = False``; it is reported by path and never ranked (``strict``: an InputError instead).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..core.fileio import InputError
from ..core.images import load_image
from .models import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodeSettings:
    """How a gallery is encoded: batches, loader workers, resumable cache chunks."""

    batch_size: int = 64
    workers: int = 2
    chunk: int = 2048  # images per resumable cache part
    cache_dir: Optional[Path] = None  # None: no cache
    strict: bool = False  # an unreadable image aborts instead of being skipped
    progress: bool = True


class ImageFiles(Dataset):
    """(tensor, ok) per path; an unreadable image gives ok=False."""

    def __init__(self, paths: Sequence[Path], transform: Callable, flip: bool = False):
        self.paths, self.transform, self.flip = list(paths), transform, flip

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            with Image.open(self.paths[i]) as im:
                im.load()
                if self.flip:
                    im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                return self.transform(im), True
        except Exception as e:  # any decoder error: reported by path, never fatal here
            log.warning("unreadable image %s: %s", self.paths[i], e)
            return None, False


def require_readable(paths: Sequence[Path], ok: np.ndarray) -> None:
    """``--strict``: InputError naming the first unreadable image and why."""
    bad = np.flatnonzero(~np.asarray(ok, bool))
    if len(bad):
        path = paths[bad[0]]
        try:
            load_image(path)
            why = "unreadable image"
        except Exception as e:
            why = f"unreadable image: {e}"
        raise InputError(path, None, f"{why} (without --strict it is skipped)")


def _collate(batch):
    ok = torch.tensor([b[1] for b in batch])
    shape = next((b[0].shape for b in batch if b[1]), None)
    if shape is None:
        return None, ok
    return torch.stack([b[0] if b[1] else torch.zeros(shape) for b in batch]), ok


@torch.no_grad()
def encode_images(
    loaded: LoadedModel, paths: Sequence[Path], settings: EncodeSettings = EncodeSettings(), flip: bool = False,
    desc: str = "encode images",
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised image embeddings (float32, n x d) and a mask of images that could be read;
    ``settings.strict`` raises InputError at the first batch holding an unreadable image."""
    loader = DataLoader(ImageFiles(paths, loaded.preprocess, flip), batch_size=settings.batch_size,
                        num_workers=settings.workers, collate_fn=_collate, persistent_workers=False)
    dim = loaded.model.visual.output_dim if hasattr(loaded.model.visual, "output_dim") else None
    embeddings, oks = [], []
    for images, ok in tqdm(loader, desc=desc, unit="batch", disable=not settings.progress):
        if images is None:
            embeddings.append(np.zeros((len(ok), dim or 1), np.float32))
        else:
            with loaded.autocast():
                features = loaded.model.encode_image(images.to(loaded.device), normalize=True)
            embeddings.append(features.float().cpu().numpy())
        if settings.strict:
            require_readable(paths[len(oks) * settings.batch_size:], ok.numpy())
        oks.append(ok.numpy())
    if not embeddings:
        return np.zeros((0, dim or 0), np.float32), np.zeros(0, bool)
    emb = np.concatenate(embeddings)
    ok = np.concatenate(oks)
    emb[~ok] = 0.0
    return emb, ok


@torch.no_grad()
def encode_texts(loaded: LoadedModel, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """L2-normalised text embeddings (float32, n x d); each distinct text is encoded once
    (test queries repeat: one query per gallery image)."""
    distinct = list(dict.fromkeys(texts))
    out = []
    for start in range(0, len(distinct), batch_size):
        tokens = loaded.tokenizer(distinct[start:start + batch_size]).to(loaded.device)
        with loaded.autocast():
            features = loaded.model.encode_text(tokens, normalize=True)
        out.append(features.float().cpu().numpy())
    if not out:
        return np.zeros((0, 0), np.float32)
    row = {text: i for i, text in enumerate(distinct)}
    return np.concatenate(out)[[row[t] for t in texts]]


# ------------------------------------------------------------------ sharding across ranks

def encode_images_sharded(
    loaded: LoadedModel, paths: Sequence[Path], rank: int, world_size: int, settings: EncodeSettings = EncodeSettings(),
) -> tuple[np.ndarray, np.ndarray]:
    """This rank's share of a gallery, images ``rank, rank + world_size, ...`` (``merge_shards`` restores
    the order); striding, not contiguous blocks, keeps the shares equal to one image."""
    return encode_images(loaded, list(paths)[rank::world_size], settings)


def merge_shards(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-rank (embeddings, ok), in rank order, back into gallery order."""
    world = len(parts)
    n = sum(len(e) for e, _ in parts)
    emb = np.zeros((n, max(e.shape[1] for e, _ in parts)), np.float32)
    ok = np.zeros(n, bool)
    for rank, (e, o) in enumerate(parts):
        emb[rank::world], ok[rank::world] = e, o
    return emb, ok


def encode_images_distributed(
    loaded: LoadedModel, paths: Sequence[Path], settings: EncodeSettings = EncodeSettings(),
) -> tuple[np.ndarray, np.ndarray]:
    """Each rank of the initialised ``torch.distributed`` group encodes its shard; every rank gets the
    whole gallery back, in order (``all_gather_object``: works on gloo and NCCL alike)."""
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    parts: list = [None] * world
    torch.distributed.all_gather_object(parts, encode_images_sharded(loaded, paths, rank, world, settings))
    return merge_shards(parts)
