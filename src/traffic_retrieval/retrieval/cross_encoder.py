"""Cross-encoder re-ranking: a small image-text matching model, as BLIP's ITM head, that reads a
query's text tokens against an image's spatial features and re-scores each query's first candidates.

A bi-encoder compares one vector per side: a badge of a few pixels or a sleeve has to survive the
image tower's pooling to count. The cross-encoder keeps the tower's last spatial map (a token per
cell) and the text tower's token states, and lets every text token attend to every image cell
(``layers`` blocks of text self-attention, cross-attention to the image and an MLP), then scores the
pair with one logit. Both towers are frozen: their tokens come from OpenCLIP's own
``forward_intermediates`` (any OpenCLIP model: a timm tower's last stage, a ViT's last block, ViT-bigG-14's
included), so only the matcher trains, on the train split's captions with hard negatives mined by the
bi-encoder (training/matching.py). At query time its logit, times ``weight``, is added to the first
score of each of the first ``candidates`` images, which are re-ordered by the sum.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..core.fileio import InputError, atomic_path, require_file
from .encode import EncodeSettings, encode_batches
from .gallery import Gallery
from .models import LoadedModel

MATCHER_FILE = "a cross-encoder (a .safetensors file written by traffic-retrieval matcher)"


@dataclass(frozen=True)
class MatcherShape:
    """The matcher's size, and which of the image tower's intermediates it reads."""

    width: int = 128
    layers: int = 2
    heads: int = 4
    image_block: int = 2  # intermediates from the end: 1 the last stage or block, 2 the one before (seed 1's
    # choice: for resnet10t at 64 px a 4 x 4 grid rather than the last stage's 2 x 2)
    text_length: int = 32  # text tokens kept (the challenge's captions are shorter)


@dataclass(frozen=True)
class CrossEncoding:
    """Cross-encoder re-ranking in the query pipeline: how many first candidates it re-scores, and the
    weight of its logit against the first score (in the similarity's units)."""

    matcher: "Matcher"
    candidates: int = 20
    weight: float = 0.01  # chosen on seed 1 among 0.01-0.2 (docs/shift/cross-encoder-seed1.txt): more hurts


class Block(nn.Module):
    """Text self-attention, cross-attention to the image tokens, MLP; pre-norm, residual."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norms = nn.ModuleList([nn.LayerNorm(width) for _ in range(4)])
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, text: torch.Tensor, pad: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        t = self.norms[0](text)
        text = text + self.self_attn(t, t, t, key_padding_mask=pad, need_weights=False)[0]
        i = self.norms[1](image)
        text = text + self.cross_attn(self.norms[2](text), i, i, need_weights=False)[0]
        return text + self.mlp(self.norms[3](text))


class Matcher(nn.Module):
    """Image tokens (B x N x image_dim) and text tokens (B x L x text_dim, ``pad`` True where padding) ->
    one matching logit a pair."""

    def __init__(self, image_dim: int, text_dim: int, cells: int, shape: MatcherShape = MatcherShape(),
                 meta: dict | None = None):
        super().__init__()
        self.shape, self.image_dim, self.text_dim, self.cells = shape, image_dim, text_dim, cells
        self.meta = dict(meta or {})  # the model whose tokens it reads
        self.source: Path | None = None
        w = shape.width
        self.image_proj, self.text_proj = nn.Linear(image_dim, w), nn.Linear(text_dim, w)
        self.position = nn.Parameter(torch.zeros(1, cells, w))
        self.blocks = nn.ModuleList([Block(w, shape.heads) for _ in range(shape.layers)])
        self.out = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, 1))

    def forward(self, image: torch.Tensor, text: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        i = self.image_proj(image) + self.position
        t = self.text_proj(text)
        for block in self.blocks:
            t = block(t, pad, i)
        keep = (~pad).unsqueeze(-1).to(t.dtype)
        pooled = (t * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return self.out(pooled).squeeze(-1)

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        meta = {"shape": json.dumps(asdict(self.shape)), "image_dim": str(self.image_dim), "text_dim": str(self.text_dim),
                "cells": str(self.cells), "meta": json.dumps(self.meta)}
        with atomic_path(Path(path)) as tmp:
            save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp), metadata=meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "Matcher":
        from safetensors import safe_open

        require_file(path, MATCHER_FILE)
        try:
            with safe_open(str(path), "pt") as f:
                m = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            matcher = cls(int(m["image_dim"]), int(m["text_dim"]), int(m["cells"]), MatcherShape(**json.loads(m["shape"])),
                          json.loads(m["meta"]))
            matcher.load_state_dict(tensors)
        except Exception as e:  # not a matcher file: say so, naming it
            raise InputError(path, None, f"not {MATCHER_FILE} ({type(e).__name__}: {str(e)[:120]})") from None
        matcher.source = Path(path)
        return matcher.eval()

    def check(self, loaded: LoadedModel) -> None:
        """InputError unless the matcher was trained on tokens of ``loaded``'s model."""
        fitted = self.meta.get("model")
        if fitted and fitted != loaded.name:
            raise InputError(self.source or "cross-encoder", None, f"trained on {fitted} tokens, not on {loaded.name}'s: "
                                                                    "train it again with traffic-retrieval matcher")


def image_tokens(loaded: LoadedModel, images: torch.Tensor, block: int = 1) -> torch.Tensor:
    """The image tower's spatial map ``block`` intermediates from the end, as tokens (B x cells x C)."""
    out = loaded.model.forward_intermediates(image=images, image_indices=block, intermediates_only=True)
    grid = out["image_intermediates"][0]  # B x C x H x W
    return grid.flatten(2).transpose(1, 2)


def text_tokens(loaded: LoadedModel, texts: Sequence[str], length: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The text tower's last token states, normalised as its pooled output is (B x length x C), and
    the padding mask (True where padding)."""
    tokens = loaded.tokenizer(list(texts)).to(loaded.device)
    out = loaded.model.forward_intermediates(text=tokens, text_indices=1, normalize_intermediates=True,
                                             intermediates_only=True)
    states = out["text_intermediates"][0][:, :length]
    return states, tokens[:, :length] == 0


def candidate_tokens(loaded: LoadedModel, gallery: Gallery, rows: np.ndarray, block: int) -> torch.Tensor:
    """The image tokens of gallery ``rows`` (len(rows) x cells x C), each image read once per gallery
    (``Gallery.tokens`` keeps them: a typed query of serve reads only its new candidates)."""
    missing = [int(r) for r in np.unique(rows) if int(r) not in gallery.tokens]
    if missing:
        if gallery.paths is None:
            raise ValueError("the cross-encoder reads the candidates' images: this gallery has no paths")
        features = lambda m, images: image_tokens(m, images, block)  # noqa: E731
        done = 0
        for emb, _, _ in encode_batches(loaded, [gallery.paths[r] for r in missing], EncodeSettings(progress=False),
                                        features=features):
            for r, e in zip(missing[done:done + len(emb)], emb):
                gallery.tokens[r] = torch.from_numpy(e.astype(np.float16))
            done += len(emb)
    return torch.stack([gallery.tokens[int(r)] for r in rows])


def cross_rescore(loaded: LoadedModel, gallery: Gallery, queries: Sequence[str], indices: np.ndarray,
                  scores: np.ndarray, cross: CrossEncoding) -> tuple[np.ndarray, np.ndarray]:
    """Each query's first ``cross.candidates`` (``indices``, best first, with their ``scores``) re-ordered by
    score plus ``cross.weight`` times the matcher's logit for the query as typed (no prompt: the matcher
    reads attributes, not the domain)."""
    cross.matcher.check(loaded)
    n = min(cross.candidates, indices.shape[1])
    rows, position = np.unique(indices[:, :n], return_inverse=True)
    distinct = list(dict.fromkeys(queries))
    line = {q: i for i, q in enumerate(distinct)}
    with torch.no_grad():
        text = text_tokens(loaded, distinct, cross.matcher.shape.text_length)
        image = candidate_tokens(loaded, gallery, rows, cross.matcher.shape.image_block)
    pairs = np.stack([np.repeat([line[q] for q in queries], n), position.ravel()], 1)
    logits = match_scores(cross.matcher, image, text, pairs).reshape(len(queries), n)
    fused = scores[:, :n] + cross.weight * logits
    order = np.argsort(-fused, axis=1, kind="stable")
    return (np.concatenate([np.take_along_axis(indices[:, :n], order, axis=1), indices[:, n:]], axis=1),
            np.concatenate([np.take_along_axis(fused, order, axis=1), scores[:, n:]], axis=1))


@torch.no_grad()
def match_scores(matcher: Matcher, image_rows: torch.Tensor, text: tuple[torch.Tensor, torch.Tensor],
                 pairs: np.ndarray, batch: int = 1024) -> np.ndarray:
    """The matcher's logit for each (text row, image row) of ``pairs`` (P x 2) over token tables."""
    states, pad = (part.cpu() for part in text)
    out = []
    for start in range(0, len(pairs), batch):
        t, i = (torch.from_numpy(np.ascontiguousarray(c)) for c in pairs[start:start + batch].T)
        out.append(matcher(image_rows[i].float(), states[t].float(), pad[t]).float().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)
