"""Attribute fusion: attribute heads over image embeddings, fused with the CLIP similarity.

A query states attributes ("grey", "Chery", "Sedan"; a pedestrian's gender, age, bags ...) and a
gallery image is relevant when it has exactly those. CLIP scores the whole sentence at once; the
heads score each stated attribute on its own: one softmax per group of core/attribute_groups.py
over the L2-normalised image embedding, fitted on the parsed training labels (missing vehicle
fields masked out). A candidate's fused score is

    logit_scale * cos(query, image) + weight * sum over the query's stated groups of log p(value | image)

both terms log-likelihoods, so ``weight`` 1 trusts them equally. The heads read only embeddings,
so they fit any backbone (ViT-bigG-14's cached embeddings included) in seconds on a CPU.

The heads read an embedding centred on the mean of its domain and normalised again: the training
views' mean when they are fitted, the gallery's own mean at query time (``Fusion.adapt``). The web
and surveillance embeddings differ by a shared offset that a linear head reads as evidence (on seed
1 the heads' colour accuracy on the test gallery rose from 0.62 to 0.75 with it,
docs/domain-shift.md); removing each domain's mean is the embedding-level form of re-estimating
batch-norm statistics on the target domain, and needs no labels of the gallery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.attribute_groups import MISSING, Group
from ..core.fileio import InputError, atomic_path, require_file

HEADS_FILE = "attribute heads (a .safetensors file written by traffic-retrieval attributes)"
MIN_ADAPT = 100  # a gallery of fewer readable images has no mean to trust: the training one is used


def centred(emb: np.ndarray, centre: np.ndarray | None) -> np.ndarray:
    """Rows minus ``centre``, L2-normalised again (the rows as they are when ``centre`` is None)."""
    x = np.ascontiguousarray(emb, np.float32)
    if centre is None:
        return x
    x = x - centre.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class HeadSettings:
    """How the heads are fitted: a linear softmax per group (``hidden`` 0) or a shared hidden layer."""

    hidden: int = 0
    centred: bool = True  # fit on embeddings centred on the training views' mean (see the module doc)
    weight_decay: float = 1e-4
    epochs: int = 300  # full-batch Adam steps
    lr: float = 0.01
    seed: int = 0


class AttributeHeads:
    """One categorical head per group over image embeddings of dimension ``dim``."""

    def __init__(self, groups: Sequence[Group], dim: int, hidden: int = 0, meta: dict | None = None):
        self.groups, self.dim, self.hidden = tuple(groups), dim, hidden
        self.meta = dict(meta or {})  # what the heads were fitted on: model, pretrained
        self.source: Path | None = None  # the file they were loaded from, for messages
        self.centre: np.ndarray | None = None  # the training views' mean (None: heads fitted uncentred)
        sizes = [len(g.values) for g in self.groups]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        trunk = [torch.nn.Linear(dim, hidden), torch.nn.GELU()] if hidden else []
        self.net = torch.nn.Sequential(*trunk, torch.nn.Linear(hidden or dim, int(self.offsets[-1])))

    def _logits(self, emb: torch.Tensor) -> list[torch.Tensor]:
        out = self.net(emb)
        return [out[:, a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def fit(self, emb: np.ndarray, targets: np.ndarray, s: HeadSettings = HeadSettings()) -> "AttributeHeads":
        """Fit on embeddings (n x dim) and targets (n x groups, MISSING where a label is silent)."""
        torch.manual_seed(s.seed)
        for layer in self.net:  # drawn here, from the seed, not from whatever ran before
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        self.centre = np.asarray(emb, np.float32).mean(0) if s.centred else None
        self._train(centred(emb, self.centre), targets, s.epochs, s.lr, s.weight_decay)
        return self

    def _train(self, x: np.ndarray, targets: np.ndarray, epochs: int, lr: float, weight_decay: float) -> None:
        """Full-batch Adam on the summed cross-entropy of every group a row states."""
        x, y = torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(np.asarray(targets, np.int64))
        opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(epochs):
            opt.zero_grad()
            loss = sum(torch.nn.functional.cross_entropy(logits, y[:, g], ignore_index=MISSING)
                       for g, logits in enumerate(self._logits(x)) if (y[:, g] != MISSING).any())
            loss.backward()
            opt.step()

    def adapted(self, emb: np.ndarray, targets: np.ndarray, centre: np.ndarray | None, epochs: int = 100,
                lr: float = 0.003) -> "AttributeHeads":
        """A copy trained further, from these weights, on a gallery's own rows (``emb``, centred on
        ``centre``, its mean) and their pseudo-labels (``targets``, MISSING where unsure): the read-out
        moved to the gallery's domain without a label of it; it reads rows centred on ``centre``."""
        copy = AttributeHeads(self.groups, self.dim, self.hidden, self.meta)
        copy.net.load_state_dict(self.net.state_dict())
        copy.source, copy.centre = self.source, centre
        copy._train(centred(emb, centre), targets, epochs, lr, 0.0)
        return copy

    @torch.no_grad()
    def log_probs(self, emb: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
        """Log-probabilities of every value of every group (n x total values; ``offsets`` splits them).
        ``centre``: the mean of the domain ``emb`` comes from (a gallery's), instead of the training one."""
        x = torch.from_numpy(centred(emb, self.centre if centre is None or self.centre is None else centre))
        return torch.cat([torch.log_softmax(l, dim=1) for l in self._logits(x)], dim=1).numpy()

    def accuracy(self, emb: np.ndarray, targets: np.ndarray, centre: np.ndarray | None = None) -> dict[str, float]:
        """Per group, the share of stated values predicted (for reports)."""
        lp = self.log_probs(emb, centre)
        out = {}
        for g, (a, b) in enumerate(zip(self.offsets[:-1], self.offsets[1:])):
            stated = targets[:, g] != MISSING
            if stated.any():
                out[self.groups[g].name] = float((lp[stated, a:b].argmax(1) == targets[stated, g]).mean())
        return out

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        meta = {"groups": json.dumps([[g.name, list(g.values), g.kind] for g in self.groups]),
                "dim": str(self.dim), "hidden": str(self.hidden), "meta": json.dumps(self.meta)}
        tensors = {k: v.contiguous() for k, v in self.net.state_dict().items()}
        if self.centre is not None:
            tensors["centre"] = torch.from_numpy(self.centre)
        with atomic_path(Path(path)) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "AttributeHeads":
        from safetensors import safe_open

        require_file(path, HEADS_FILE)
        try:
            with safe_open(str(path), "pt") as f:
                m = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            groups = [Group(n, tuple(v), k) for n, v, k in json.loads(m["groups"])]
            heads = cls(groups, int(m["dim"]), int(m["hidden"]), json.loads(m["meta"]))
            centre = tensors.pop("centre", None)  # absent in heads fitted before centring
            heads.net.load_state_dict(tensors)
            heads.centre = None if centre is None else centre.numpy()
        except Exception as e:  # not a heads file: say so, naming it
            raise InputError(path, None, f"not {HEADS_FILE} ({type(e).__name__}: {str(e)[:120]})") from None
        heads.source = Path(path)
        return heads

    def check(self, model: str, dim: int) -> None:
        """InputError unless the heads were fitted on embeddings of ``model`` (its name and size)."""
        fitted = self.meta.get("model")
        if dim != self.dim or (fitted and fitted != model):
            raise InputError(self.source or "attribute heads", None,
                             f"fitted on {fitted} embeddings of dimension {self.dim}, not on {model}'s ({dim}): "
                             "fit them again with traffic-retrieval attributes for this model")


@dataclass(frozen=True)
class Fusion:
    """Attribute fusion in the query pipeline: the heads, their weight, how many first-ranked
    candidates are re-scored (all of them in a gallery of up to that many images), and whether the
    heads read the gallery centred on its own mean (``adapt``; the module doc)."""

    heads: AttributeHeads
    weight: float = 1.0  # chosen on seed 1 (docs/shift/select-seed1.txt)
    candidates: int = 1000
    adapt: bool = True  # chosen on seed 1 (docs/shift/select-seed1.txt)


def attribute_matrix(heads: AttributeHeads, query_targets: np.ndarray, gallery: np.ndarray,
                     centre: np.ndarray | None = None, block: int = 65536) -> np.ndarray:
    """``attribute_scores`` for every query and every image of ``gallery`` (n_queries x n_images), a block
    of rows at a time: each query's one-hot stated values against the images' log-probabilities."""
    onehot = np.zeros((len(query_targets), int(heads.offsets[-1])), np.float32)
    for g, offset in enumerate(heads.offsets[:-1]):
        asked = np.flatnonzero(query_targets[:, g] != MISSING)
        onehot[asked, offset + query_targets[asked, g]] = 1.0
    out = np.empty((len(query_targets), len(gallery)), np.float32)
    for start in range(0, len(gallery), block):
        out[:, start:start + block] = onehot @ heads.log_probs(np.asarray(gallery[start:start + block]), centre).T
    return out


def attribute_scores(heads: AttributeHeads, query_targets: np.ndarray, gallery: np.ndarray,
                     candidates: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """Summed log-probabilities of each query's stated values (``query_targets``: n_queries x groups)
    for each of its candidates (rows of ``gallery``, centred on ``centre`` when given): n_queries x
    n_candidates. Each distinct candidate is scored once, and only the candidates' rows are read (a
    memory-mapped gallery serves as well)."""
    rows, position = np.unique(candidates, return_inverse=True)
    position = position.reshape(candidates.shape)
    table = heads.log_probs(gallery[rows], centre) if len(rows) else np.zeros((0, int(heads.offsets[-1])), np.float32)
    out = np.zeros(candidates.shape, np.float32)
    for g, offset in enumerate(heads.offsets[:-1]):
        asked = query_targets[:, g] != MISSING
        if asked.any():
            columns = offset + query_targets[asked, g]
            out[asked] += table[position[asked], columns[:, None]]
    return out
