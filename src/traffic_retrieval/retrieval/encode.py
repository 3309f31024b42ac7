"""Encoding: gallery images in batches through DataLoader workers, query texts once each.

Embeddings are L2-normalised float32 rows. An image that cannot be read gives a zero row,
``ok = False`` and size 0 x 0; it is reported by path and never ranked (``strict``: an InputError
instead). Batch size and workers default to the machine (``machine_batch_size``, ``machine_workers``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..core.fileio import InputError
from ..core.images import load_image, open_image
from .decode import FileBytes, TensorTransform, collate_bytes, decode_batch
from .models import LoadedModel

log = logging.getLogger(__name__)


CUDA_BATCH, CPU_BATCH = 256, 64
MAX_WORKERS = 16


def cpu_cores() -> int:
    """Cores this process may run on (its affinity: a container's share, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine_batch_size() -> int:
    """Images a batch where the model will run: large on CUDA, where a batch fills the GPU; small on a CPU."""
    return CUDA_BATCH if torch.cuda.is_available() else CPU_BATCH


def machine_workers() -> int:
    """DataLoader workers: on CUDA, one a core up to 16, so that decoding keeps up with the GPU; on a
    CPU none, since the model's own threads already use every core and workers compete with them
    (measured on 2 cores: docs/speed-and-scale.md, section 1)."""
    return min(cpu_cores(), MAX_WORKERS) if torch.cuda.is_available() else 0


@dataclass(frozen=True)
class EncodeSettings:
    """How a gallery is encoded and read back: batches and loader workers (by default the machine's
    choice), resumable cache chunks, and the memory a search over it may hold."""

    batch_size: int = field(default_factory=machine_batch_size)
    workers: int = field(default_factory=machine_workers)
    chunk: int = 2048  # images per resumable shard of the cache
    cache_dir: Optional[Path] = None  # None: no cache (the embeddings stay in memory)
    strict: bool = False  # an unreadable image aborts instead of being skipped
    progress: bool = True
    memory_budget: Optional[int] = None  # bytes of blocks a search may hold (None: rank.default_budget())


class ImageFiles(Dataset):
    """(tensor, ok, (width, height)) per path; an unreadable image gives ok=False and size 0 x 0."""

    def __init__(self, paths: Sequence[Path], transform: Callable, flip: bool = False):
        self.paths, self.transform, self.flip = list(paths), transform, flip

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            with open_image(self.paths[i]) as im:
                size = im.size  # the header's, as core.images.image_kind reads it
                im.load()
                if self.flip:
                    im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                return self.transform(im), True, size
        except Exception as e:  # any decoder error: reported by path, never fatal here
            log.warning("unreadable image %s: %s", self.paths[i], e)
            return None, False, (0, 0)


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
    sizes = torch.tensor([b[2] for b in batch], dtype=torch.int32).reshape(len(batch), 2)
    shape = next((b[0].shape for b in batch if b[1]), None)
    if shape is None:
        return None, ok, sizes
    return torch.stack([b[0] if b[1] else torch.zeros(shape) for b in batch]), ok, sizes


def _image_batches(loaded: LoadedModel, paths: Sequence[Path], settings: EncodeSettings,
                   flip: bool) -> Iterator[tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor]]:
    """(images, readable mask, sizes) a batch at a time: transformed by PIL in the loader, or, with the
    ``gpu-decode`` lever, read as bytes by the loader and decoded and transformed on the model's device."""
    cuda = loaded.device.type == "cuda"
    if not loaded.placement.levers.gpu_decode:
        loader = DataLoader(ImageFiles(paths, loaded.preprocess, flip), batch_size=settings.batch_size,
                            num_workers=settings.workers, collate_fn=_collate, pin_memory=cuda)
        yield from loader
        return
    transform = TensorTransform.of(loaded.preprocess, loaded.square_pad)
    loader = DataLoader(FileBytes(paths), batch_size=settings.batch_size, num_workers=settings.workers,
                        collate_fn=collate_bytes)
    done = 0
    for raw in loader:
        yield decode_batch(raw, transform, loaded.device, flip, paths[done:done + len(raw)])
        done += len(raw)


def embeddings(loaded: LoadedModel, images: torch.Tensor) -> torch.Tensor:
    """What a gallery is encoded into: the model's L2-normalised image embeddings."""
    return loaded.model.encode_image(images, normalize=True)


@torch.no_grad()
def encode_batches(
    loaded: LoadedModel, paths: Sequence[Path], settings: EncodeSettings = EncodeSettings(), flip: bool = False,
    desc: str = "encode images", features: Callable[[LoadedModel, torch.Tensor], torch.Tensor] = embeddings,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(``features`` of each image as float32, by default its L2-normalised embedding; readable mask;
    image sizes) a batch at a time, in order, through one DataLoader over every path (its workers live
    for the whole pass; pinned memory when the model is on CUDA; bytes alone with ``gpu-decode``); an unreadable image's features are
    zeros; ``settings.strict`` raises InputError at the first batch holding an unreadable image."""
    shape: tuple = (loaded.model.visual.output_dim if hasattr(loaded.model.visual, "output_dim") else 1,)
    done = 0
    with tqdm(total=len(paths), desc=desc, unit="image", disable=not settings.progress) as bar:
        for images, ok, sizes in _image_batches(loaded, paths, settings, flip):
            if images is None:
                emb = np.zeros((len(ok), *shape), np.float32)
            else:
                with loaded.autocast():
                    out = features(loaded, images.to(loaded.device, non_blocking=loaded.device.type == "cuda"))
                emb = out.float().cpu().numpy()
                emb[~ok.numpy()] = 0.0
                shape = emb.shape[1:]
            if settings.strict:
                require_readable(paths[done:], ok.numpy())
            done += len(ok)
            bar.update(len(ok))
            yield emb, ok.numpy(), sizes.numpy()


def encode_images(
    loaded: LoadedModel, paths: Sequence[Path], settings: EncodeSettings = EncodeSettings(), flip: bool = False,
    desc: str = "encode images",
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised image embeddings (float32, n x d) and a mask of images that could be read, in memory."""
    batches = list(encode_batches(loaded, paths, settings, flip, desc))
    if not batches:
        dim = loaded.model.visual.output_dim if hasattr(loaded.model.visual, "output_dim") else 0
        return np.zeros((0, dim), np.float32), np.zeros(0, bool)
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


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
