"""Ranking: normalised embeddings, a matrix product and top-k, within a memory budget.

The gallery is streamed in blocks of rows sized from the budget (from its shards on disk, or
slices of an array in memory), each block scored against a block of queries and merged into a
running top-k: memory is one block and its (queries x block) scores, never a texts x images x
dim tensor (the seed's broadcast ``cosine_similarity``) nor a queries x gallery score matrix, and
top-k avoids a full sort of every row.
"""

from __future__ import annotations

import os
from typing import Iterator, Optional

import numpy as np
import torch

from .shards import DTYPE, Shards

BUDGET_SHARE = 4  # the default budget is a quarter of the machine's memory


def machine_memory() -> int:
    """Bytes of physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_budget() -> int:
    """Bytes a search may hold in blocks when nothing else is said: a quarter of the machine's memory,
    leaving the rest to the model, an approximate index, and the other processes of the machine."""
    return machine_memory() // BUDGET_SHARE


def block_rows(budget: int, dim: int, queries: int, from_disk: bool) -> int:
    """Gallery rows per block so that a block fits ``budget``: each row as float32 (and as float16 in the
    read buffer when it comes from disk) and its score for each query of a query block."""
    per_row = dim * 4 + (dim * DTYPE.itemsize if from_disk else 0) + queries * 4
    return max(1, int(budget) // per_row)


def row_blocks(gallery: "np.ndarray | Shards", rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, float32 rows) of the gallery, ``rows`` at a time."""
    if isinstance(gallery, Shards):
        yield from gallery.blocks(rows)
        return
    for start in range(0, len(gallery), rows):
        yield start, np.ascontiguousarray(gallery[start:start + rows], dtype=np.float32)


def topk_blocked(
    queries: np.ndarray, gallery: "np.ndarray | Shards", k: int, block: int = 1024, valid: Optional[np.ndarray] = None,
    budget: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and gallery indices (n_queries x min(k, n_valid)), best first, scoring ``block`` queries at
    a time against blocks of gallery rows that fit ``budget`` bytes (None: ``default_budget()``).

    ``valid`` masks gallery rows that may not be returned (unreadable images, another kind).
    """
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    valid = None if valid is None else np.asarray(valid, bool)
    k = min(k, len(gallery) if valid is None else int(valid.sum()))
    best = torch.full((len(q), k), -torch.inf), torch.zeros((len(q), k), dtype=torch.int64)
    if k and len(q):
        rows = block_rows(budget or default_budget(), q.shape[1], min(block, len(q)), isinstance(gallery, Shards))
        # the scores of every (query block, row block) pair go into one buffer: a new matrix for each
        # would hold two at once (the next is made before the last is freed), twice what the budget counts
        buffer = torch.empty(min(block, len(q)) * min(rows, len(gallery)))
        for start, rows_f32 in row_blocks(gallery, rows):
            allowed = None if valid is None else valid[start:start + len(rows_f32)]
            if allowed is not None and not allowed.any():
                continue
            g = torch.from_numpy(rows_f32)
            penalty = None if allowed is None else torch.from_numpy(np.where(allowed, 0.0, -np.inf).astype(np.float32))
            for qs in range(0, len(q), block):
                part = q[qs:qs + block]
                sims = torch.mm(part, g.T, out=buffer[:len(part) * len(g)].view(len(part), len(g)))
                if penalty is not None:
                    sims += penalty
                top = torch.topk(sims, min(k, len(rows_f32)), dim=1)
                scores = torch.cat([best[0][qs:qs + block], top.values], dim=1)
                indices = torch.cat([best[1][qs:qs + block], top.indices + start], dim=1)
                merged = torch.topk(scores, k, dim=1)
                best[0][qs:qs + block] = merged.values
                best[1][qs:qs + block] = torch.gather(indices, 1, merged.indices)
    return best[0].numpy(), best[1].numpy()
