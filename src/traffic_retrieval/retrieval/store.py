"""The embedding store: a gallery's embeddings cached on disk, keyed by content.

The key covers the model name, its weights (checkpoint path, size and mtime, or a digest of a
random initialisation), the inference precision, the transform, and each image's name, size and
mtime, so a changed gallery or checkpoint is re-encoded. Encoding is written in chunks, each
atomically, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..core.fileio import atomic_open
from .encode import EncodeSettings, encode_images, require_readable
from .models import LoadedModel


def _file_stamp(path: Path) -> list:
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


DIGEST_SAMPLE = 4096  # elements of each tensor that the digest of a random initialisation reads


def weights_digest(loaded: LoadedModel) -> Optional[str]:
    """A digest of the weights when nothing else names them: a random initialisation differs in
    every process, so two of them must never share cached work. None for a tag or a checkpoint.
    It reads a sample of every tensor (two random initialisations differ everywhere), not all of
    ViT-bigG-14's 10 GB."""
    if loaded.pretrained:
        return None
    digest = hashlib.sha256()
    for name, tensor in loaded.model.state_dict().items():
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // DIGEST_SAMPLE)][:DIGEST_SAMPLE]
        digest.update(name.encode() + sample.cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(loaded: LoadedModel, paths: Sequence[Path], flip: bool) -> str:
    """Content key of a gallery encoding."""
    checkpoint = None
    if loaded.pretrained and Path(loaded.pretrained).is_file():
        checkpoint = [str(Path(loaded.pretrained).resolve()), *_file_stamp(Path(loaded.pretrained))[1:]]
    payload = {
        "model": loaded.name, "pretrained": loaded.pretrained, "checkpoint": checkpoint, "weights": weights_digest(loaded),
        "flip": flip, "square_pad": loaded.square_pad, "transform": repr(loaded.preprocess),
        "images": [str(Path(paths[0]).parent.resolve()) if paths else None] + [_file_stamp(Path(p)) for p in paths],
    }
    if loaded.precision != "fp32":  # fp32 keys stay as they were before precision was part of the key
        payload["precision"] = loaded.precision
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def gallery_embeddings(
    loaded: LoadedModel, paths: Sequence[Path], settings: EncodeSettings = EncodeSettings(), flip: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and readable mask of a gallery, from the cache when it holds them; ``strict``
    raises InputError at the first unreadable image, cached or not."""
    if settings.cache_dir is None:
        return encode_images(loaded, paths, settings, flip)
    key = cache_key(loaded, paths, flip)
    final = Path(settings.cache_dir) / f"gallery-{key}.npz"
    if final.is_file():
        with np.load(final) as z:
            if settings.strict:
                require_readable(paths, z["ok"])
            return z["embeddings"], z["ok"]
    parts = Path(settings.cache_dir) / f"gallery-{key}.parts"
    parts.mkdir(parents=True, exist_ok=True)
    embeddings, oks = [], []
    chunk = settings.chunk
    for n, start in enumerate(range(0, len(paths), chunk)):
        part = parts / f"{n:06d}.npz"
        if not part.is_file():
            emb, ok = encode_images(loaded, paths[start:start + chunk], settings, flip,
                                    desc=f"encode images {start}-{min(start + chunk, len(paths))}/{len(paths)}")
            with atomic_open(part, "wb") as f:
                np.savez(f, embeddings=emb, ok=ok)
        with np.load(part) as z:
            if settings.strict:
                require_readable(paths[start:start + chunk], z["ok"])
            embeddings.append(z["embeddings"])
            oks.append(z["ok"])
    emb = np.concatenate(embeddings) if embeddings else np.zeros((0, 0), np.float32)
    ok = np.concatenate(oks) if oks else np.zeros(0, bool)
    with atomic_open(final, "wb") as f:
        np.savez(f, embeddings=emb, ok=ok)
    shutil.rmtree(parts, ignore_errors=True)
    return emb, ok
