"""The embedding store: a gallery's embeddings written to disk as they are made, keyed by content.

``CACHE/gallery-KEY/`` holds half-precision shards, one per chunk of ``settings.chunk`` images, each
written atomically as soon as its images are encoded, and a manifest once every shard is there
(``shards.py``). An interrupted encoding continues with the missing shards; under torchrun each
rank writes its own shards into the same folder and rank 0 seals it. The key covers the model's
identity (``model_identity``), horizontal flipping, and each image's name, size and mtime, so a
changed gallery or checkpoint is encoded anew; nothing holds the gallery in memory twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..core.fileio import UserError
from .encode import EncodeSettings, encode_batches, require_readable
from .models import LoadedModel
from .rerank import tta_gallery
from .shards import DTYPE, MANIFEST, Embeddings, damaged_shards, finish_store, shard_done, unseal, write_shard

log = logging.getLogger(__name__)

FORMAT = 2  # of the store folder (1: one .npz of float32 rows)


def _file_stamp(path: Path) -> list:
    """Name, size and mtime: what keys an image's cached row (a path that cannot be stat'ed, such as a
    dangling link, keys as absent, and is reported unreadable when it is encoded)."""
    try:
        st = path.stat()
    except OSError:
        return [path.name, None, None]
    return [path.name, st.st_size, st.st_mtime_ns]


def file_stamps(paths: Sequence[Path]) -> np.ndarray:
    """Each image's (size, mtime in ns) as int64 n x 2, -1 where it cannot be stat'ed: what tells a grown
    gallery's unchanged images (kept by an index update) from replaced ones (encoded again)."""
    stamps = [_file_stamp(Path(p))[1:] for p in paths]
    return np.array([[-1, -1] if s[0] is None else s for s in stamps], np.int64).reshape(len(stamps), 2)


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


def model_identity(loaded: LoadedModel) -> dict:
    """What makes two encodings by a model comparable, the one identity that the store's key and
    manifest and an index's table record: model name, ``pretrained``, the checkpoint file (resolved
    path, size and mtime, so that weights rewritten at the same path, as retraining into the same
    run folder does, are another identity), inference precision, square padding and transform, and
    a random initialisation's digest."""
    checkpoint = None
    if loaded.pretrained and Path(loaded.pretrained).is_file():
        path = Path(loaded.pretrained)
        checkpoint = [str(path.resolve()), *_file_stamp(path)[1:]]
    return {"model": loaded.name, "pretrained": loaded.pretrained, "checkpoint": checkpoint,
            "weights": weights_digest(loaded), "precision": loaded.precision, "square_pad": loaded.square_pad,
            "transform": repr(loaded.preprocess)}


def cache_key(loaded: LoadedModel, paths: Sequence[Path], flip: bool) -> str:
    """Content key of a gallery encoding."""
    payload = {"format": FORMAT, "identity": model_identity(loaded), "flip": flip,
               "images": [str(Path(paths[0]).parent.resolve()) if paths else None] + [_file_stamp(Path(p)) for p in paths]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def chunk_bounds(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk, n)) for start in range(0, n, max(1, chunk))]


def _encode_chunks(loaded: LoadedModel, paths: Sequence[Path], todo: Sequence[tuple[int, int]], folder: Path,
                   settings: EncodeSettings, flip: bool, total: int) -> None:
    """Encode the chunks ``todo`` through one loader and write each chunk's shard as soon as it is
    complete (a batch may straddle two chunks)."""
    batches = encode_batches(loaded, [p for start, stop in todo for p in paths[start:stop]], settings, flip,
                             desc=f"encode images ({len(todo)} of {total} shards to write)")
    left: tuple = ()
    try:
        for start, stop in todo:
            pieces, need = [], stop - start
            while need:
                if not left or not len(left[0]):
                    left = next(batches)
                take = min(need, len(left[0]))
                pieces.append([part[:take] for part in left])
                left, need = tuple(part[take:] for part in left), need - take
            emb, _, sizes = (np.concatenate(column) for column in zip(*pieces))
            write_shard(folder, start, emb, sizes)
    finally:
        batches.close()  # the loader's workers end with it


def write_shards(loaded: LoadedModel, paths: Sequence[Path], settings: EncodeSettings, flip: bool = False,
                 rank: int = 0, world: int = 1) -> tuple[Path, list[tuple[int, int]]]:
    """Encode this rank's missing shards (chunks ``rank, rank + world, ...``) into the store folder of
    the gallery; returns the folder and the bounds of every shard."""
    folder = Path(settings.cache_dir) / f"gallery-{cache_key(loaded, paths, flip)}"
    bounds = chunk_bounds(len(paths), settings.chunk)
    if (folder / MANIFEST).is_file():
        sealed, damaged = damaged_shards(folder)
        if not damaged:
            return folder, bounds
        # A cache is work that can be redone: what no longer matches its manifest is encoded again.
        log.warning("the cached embeddings in %s no longer match their manifest (%s): re-encoding what was lost",
                    folder, "; ".join(damaged[:3]) + (f"; and {len(damaged) - 3} more" if len(damaged) > 3 else ""))
        unseal(folder, sealed, damaged)
    folder.mkdir(parents=True, exist_ok=True)
    mine = bounds[rank::world]
    todo = [(start, stop) for start, stop in mine if not shard_done(folder, start, stop)]
    if todo:
        _encode_chunks(loaded, paths, todo, folder, settings, flip, len(mine))
    return folder, bounds


def _seal(loaded: LoadedModel, paths: Sequence[Path], folder: Path, bounds: list, flip: bool) -> Embeddings:
    if (folder / MANIFEST).is_file():
        return Embeddings.open(folder)
    for stale in folder.glob(".*.tmp"):  # left by a write that a kill interrupted
        stale.unlink(missing_ok=True)
    meta = {"key": folder.name.removeprefix("gallery-"), "identity": model_identity(loaded), "flip": flip}
    return finish_store(folder, bounds, [p.name for p in paths], meta)


def embed_gallery(loaded: LoadedModel, paths: Sequence[Path], settings: EncodeSettings = EncodeSettings(),
                  flip: bool = False) -> Embeddings:
    """The gallery's embeddings: from its store folder under ``settings.cache_dir``, encoding what is
    missing first; without a cache, encoded into memory. ``strict`` raises InputError at the first
    unreadable image, stored or not."""
    if settings.cache_dir is None:
        batches = list(encode_batches(loaded, paths, settings, flip))
        dim = loaded.model.visual.output_dim if hasattr(loaded.model.visual, "output_dim") else 0
        emb = np.concatenate([b[0] for b in batches]) if batches else np.zeros((0, dim), np.float32)
        sizes = np.concatenate([b[2] for b in batches]) if batches else np.zeros((0, 2), np.int32)
        return Embeddings([p.name for p in paths], emb, sizes, {"identity": model_identity(loaded), "flip": flip})
    stored = _seal(loaded, paths, *write_shards(loaded, paths, settings, flip), flip)
    if settings.strict:
        require_readable(paths, stored.ok)
    return stored


def tta_embeddings(loaded: LoadedModel, paths: Sequence[Path], settings: EncodeSettings = EncodeSettings()) -> Embeddings:
    """The gallery's embeddings averaged with its horizontal flips' (both encoded through the store), in
    memory, recorded as such (``meta["flip"]`` "tta") for an index built from them; rounded to float16 as
    every stored row is, so that an index of them ranks exactly as they do."""
    stored = embed_gallery(loaded, paths, settings)
    rows = tta_gallery(np.asarray(stored.rows), np.asarray(embed_gallery(loaded, paths, settings, flip=True).rows))
    rows = rows.astype(DTYPE).astype(np.float32)
    return Embeddings(stored.names, rows, stored.sizes, {**stored.meta, "flip": "tta"})


def gallery_embeddings(loaded: LoadedModel, paths: Sequence[Path], settings: EncodeSettings = EncodeSettings(),
                       flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(float32 rows in memory, readable mask) of ``embed_gallery``: for steps that fit a model on the
    whole matrix (attribute heads); searches read the store a block at a time instead."""
    stored = embed_gallery(loaded, paths, settings, flip)
    return np.asarray(stored.rows, dtype=np.float32), stored.ok


def embed_gallery_distributed(loaded: LoadedModel, paths: Sequence[Path],
                              settings: EncodeSettings = EncodeSettings()) -> Embeddings:
    """Inside an initialised ``torch.distributed`` group: each rank encodes its share of the shards
    into ``settings.cache_dir`` (a folder every rank sees), rank 0 seals the store, and every rank
    opens it from disk (no embeddings travel between ranks)."""
    if settings.cache_dir is None:
        raise UserError("sharded encoding writes its shards to a cache folder that every rank sees: set cache_dir")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    folder, bounds = write_shards(loaded, paths, settings, rank=rank, world=world)
    torch.distributed.barrier()
    if rank == 0:
        _seal(loaded, paths, folder, bounds, False)
    torch.distributed.barrier()
    return Embeddings.open(folder)
