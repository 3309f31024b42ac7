"""Ranking: normalised embeddings, a matrix product and top-k, a block of queries at a time.

Memory is one (block x gallery) score matrix, never a texts x images x dim tensor (the seed's
broadcast ``cosine_similarity``), and top-k avoids a full sort of every row.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch


def topk_blocked(
    queries: np.ndarray, gallery: np.ndarray, k: int, block: int = 1024, valid: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and gallery indices (n_queries x min(k, n_valid)), best first.

    ``valid`` masks gallery rows that may not be returned (unreadable images, another kind).
    """
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    g = torch.from_numpy(np.ascontiguousarray(gallery, dtype=np.float32))
    n_valid = len(g) if valid is None else int(valid.sum())
    k = min(k, n_valid)
    penalty = None if valid is None else torch.from_numpy(np.where(valid, 0.0, -np.inf).astype(np.float32))
    scores = np.empty((len(q), k), np.float32)
    indices = np.empty((len(q), k), np.int64)
    for start in range(0, len(q), block):
        sims = q[start:start + block] @ g.T
        if penalty is not None:
            sims += penalty
        top = torch.topk(sims, k, dim=1)
        scores[start:start + block] = top.values.numpy()
        indices[start:start + block] = top.indices.numpy()
    return scores, indices
