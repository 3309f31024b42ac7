"""Encoding: gallery images once, in batches with DataLoader workers, cached on disk; query texts.

The cache is keyed by content (model name, checkpoint size and mtime, transform switches, and
each image's name, size and mtime), so a changed gallery or checkpoint is re-encoded. Encoding
is written in chunks, each atomically, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .fileio import InputError, atomic_open
from .models import LoadedModel, load_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
log = logging.getLogger(__name__)


class UnreadableImageError(RuntimeError):
    pass


def list_images(folder: str | Path) -> list[Path]:
    """The images of a folder, sorted by name (the gallery order everywhere)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class ImageFiles(Dataset):
    """(tensor, ok) per path; an unreadable image gives a zero tensor and ok=False."""

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


def unreadable_summary(paths: Sequence[Path], ok: np.ndarray, what: str = "images", shown: int = 10) -> Optional[str]:
    """'2 of 500 images unreadable, skipped: PATH, PATH', or None when every image was read."""
    bad = [str(paths[i]) for i in np.flatnonzero(~np.asarray(ok, bool))]
    if not bad:
        return None
    more = f", and {len(bad) - shown} more (each logged when encoded)" if len(bad) > shown else ""
    return f"{len(bad)} of {len(paths)} {what} unreadable, skipped: {', '.join(bad[:shown])}{more}"


def _collate(batch):
    ok = torch.tensor([b[1] for b in batch])
    shape = next((b[0].shape for b in batch if b[1]), None)
    if shape is None:
        return None, ok
    return torch.stack([b[0] if b[1] else torch.zeros(shape) for b in batch]), ok


@torch.no_grad()
def encode_images(
    loaded: LoadedModel, paths: Sequence[Path], batch_size: int = 64, workers: int = 2,
    flip: bool = False, progress: bool = True, desc: str = "encode images", strict: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised image embeddings (float32, n x d) and a mask of images that could be read;
    ``strict`` raises InputError at the first batch holding an unreadable image."""
    loader = DataLoader(ImageFiles(paths, loaded.preprocess, flip), batch_size=batch_size,
                        num_workers=workers, collate_fn=_collate, persistent_workers=False)
    dim = loaded.model.visual.output_dim if hasattr(loaded.model.visual, "output_dim") else None
    embeddings, oks = [], []
    for images, ok in tqdm(loader, desc=desc, unit="batch", disable=not progress):
        if images is None:
            embeddings.append(np.zeros((len(ok), dim or 1), np.float32))
        else:
            features = loaded.model.encode_image(images.to(loaded.device), normalize=True)
            embeddings.append(features.float().cpu().numpy())
        if strict:
            require_readable(paths[len(oks) * batch_size:], ok.numpy())
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
        out.append(loaded.model.encode_text(tokens, normalize=True).float().cpu().numpy())
    if not out:
        return np.zeros((0, 0), np.float32)
    row = {text: i for i, text in enumerate(distinct)}
    return np.concatenate(out)[[row[t] for t in texts]]


def _file_stamp(path: Path) -> list:
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


def weights_digest(loaded: LoadedModel) -> Optional[str]:
    """A digest of the weights when nothing else names them: a random initialisation differs in
    every process, so two of them must never share cached work. None for a tag or a checkpoint."""
    if loaded.pretrained:
        return None
    digest = hashlib.sha256()
    for tensor in loaded.model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(loaded: LoadedModel, paths: Sequence[Path], flip: bool, square_pad: bool) -> str:
    """Content key of a gallery encoding."""
    checkpoint = None
    if loaded.pretrained and Path(loaded.pretrained).is_file():
        checkpoint = [str(Path(loaded.pretrained).resolve()), *_file_stamp(Path(loaded.pretrained))[1:]]
    payload = {
        "model": loaded.name, "pretrained": loaded.pretrained, "checkpoint": checkpoint, "weights": weights_digest(loaded),
        "flip": flip, "square_pad": square_pad, "transform": repr(loaded.preprocess),
        "images": [str(Path(paths[0]).parent.resolve()) if paths else None] + [_file_stamp(Path(p)) for p in paths],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def gallery_embeddings(
    loaded: LoadedModel, paths: Sequence[Path], cache_dir: Optional[Path], square_pad: bool = True,
    flip: bool = False, batch_size: int = 64, workers: int = 2, chunk: int = 2048, progress: bool = True,
    strict: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and readable mask of a gallery, from the cache when it holds them; ``strict``
    raises InputError at the first unreadable image, cached or not."""
    if cache_dir is None:
        return encode_images(loaded, paths, batch_size, workers, flip, progress, strict=strict)
    key = cache_key(loaded, paths, flip, square_pad)
    final = Path(cache_dir) / f"gallery-{key}.npz"
    if final.is_file():
        with np.load(final) as z:
            if strict:
                require_readable(paths, z["ok"])
            return z["embeddings"], z["ok"]
    parts = Path(cache_dir) / f"gallery-{key}.parts"
    parts.mkdir(parents=True, exist_ok=True)
    embeddings, oks = [], []
    chunks = range(0, len(paths), chunk)
    for n, start in enumerate(chunks):
        part = parts / f"{n:06d}.npz"
        if not part.is_file():
            emb, ok = encode_images(loaded, paths[start:start + chunk], batch_size, workers, flip, progress,
                                    desc=f"encode images {start}-{min(start + chunk, len(paths))}/{len(paths)}",
                                    strict=strict)
            with atomic_open(part, "wb") as f:
                np.savez(f, embeddings=emb, ok=ok)
        with np.load(part) as z:
            if strict:
                require_readable(paths[start:start + chunk], z["ok"])
            embeddings.append(z["embeddings"])
            oks.append(z["ok"])
    emb = np.concatenate(embeddings) if embeddings else np.zeros((0, 0), np.float32)
    ok = np.concatenate(oks) if oks else np.zeros(0, bool)
    with atomic_open(final, "wb") as f:
        np.savez(f, embeddings=emb, ok=ok)
    shutil.rmtree(parts, ignore_errors=True)
    return emb, ok


# ------------------------------------------------------------------ sharding across ranks

def encode_images_sharded(
    loaded: LoadedModel, paths: Sequence[Path], rank: int, world_size: int, **kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """This rank's share of a gallery, images ``rank, rank + world_size, ...`` (``merge_shards`` restores
    the order); striding, not contiguous blocks, keeps the shares equal to one image."""
    return encode_images(loaded, list(paths)[rank::world_size], **kwargs)


def merge_shards(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-rank (embeddings, ok), in rank order, back into gallery order."""
    world = len(parts)
    n = sum(len(e) for e, _ in parts)
    emb = np.zeros((n, max(e.shape[1] for e, _ in parts)), np.float32)
    ok = np.zeros(n, bool)
    for rank, (e, o) in enumerate(parts):
        emb[rank::world], ok[rank::world] = e, o
    return emb, ok


def encode_images_distributed(loaded: LoadedModel, paths: Sequence[Path], **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Each rank of the initialised ``torch.distributed`` group encodes its shard; every rank gets the
    whole gallery back, in order (``all_gather_object``: works on gloo and NCCL alike)."""
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    parts: list = [None] * world
    torch.distributed.all_gather_object(parts, encode_images_sharded(loaded, paths, rank, world, **kwargs))
    return merge_shards(parts)
