"""Attribute supervision in training: the training labels' attributes taught to both towers.

The contrastive loss teaches an attribute only as far as the text tower reads it from a caption and
the batch holds a pair that differs in it. Measured on seed 1's run (docs/domain-shift.md), the
image embeddings did not carry a pedestrian's gender, orientation or sleeve even on the web-style
training images (heads fitted there: 0.73, 0.76, 0.50), where a supervised network of the same
size reads them at 0.90, 0.93, 0.76 from surveillance crops. So a training adds, to the
upstream loss, the cross-entropy of one linear softmax head per attribute group
(core/attribute_groups.py) over the image embedding and another over the text embedding, with
the targets each training label states (a partial vehicle label trains only the groups it names).
The reproduce notebook uses it in stage 1 (pretraining from scratch, where the image tower has the
steps to learn the cues); one epoch of fine-tuning does not (docs/domain-shift.md).

The upstream loop passes a batch's images and tokens to the model and the model's outputs to the
loss, so the heads live on the model (``attach``: their parameters are in the optimizer, and they
run in the forward, as DDP expects) and a caption's targets are found by its tokens in a table
built from the training CSV's ``attribute`` column. The heads are training-only: the weights
export leaves them out (``HEAD_PREFIX``), and the attribute heads that fusion uses are fitted
afterwards on the fine-tuned embeddings (training/heads.py).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..core.attribute_groups import MISSING, Group, attribute_groups, label_targets
from ..core.labels import Label
from ..core.vocab import extract_vocabulary, packaged_vocabulary

HEAD_PREFIX = "attribute_heads."  # the model attribute that holds the heads; its keys are not exported
CSV_COLUMN = "attribute"  # the label's attribute field, a column of the training CSV (training/prepare.py)


def caption_targets(csv: pd.DataFrame, tokenize: Callable[[Sequence[str]], torch.Tensor]
                    ) -> tuple[tuple[Group, ...], dict[bytes, np.ndarray]]:
    """The attribute groups of the CSV's labels, and the targets of each caption keyed by its tokens
    (a caption written for two labels keeps the first one's)."""
    attributes, titles = csv[CSV_COLUMN].astype(str).tolist(), csv["title"].astype(str).tolist()
    labels = [Label("", a, t) for a, t in zip(attributes, titles)]
    vocab = extract_vocabulary([l.attribute for l in labels if l.kind == "vehicle"]).merged(packaged_vocabulary())
    groups = attribute_groups(vocab)
    tokens = tokenize(titles).numpy()
    table: dict[bytes, np.ndarray] = {}
    for row, label in zip(tokens, labels):
        table.setdefault(row.tobytes(), np.array(label_targets(label, vocab, groups), np.int64))
    return groups, table


class AttributeHeads(torch.nn.Module):
    """A linear softmax per group over an embedding, for the image and for the text tower. Embeddings
    are L2-normalised, so they are scaled by sqrt(dim) first: entries of unit variance, whose logits a
    fine-tuning learning rate can move within one epoch."""

    def __init__(self, groups: Sequence[Group], dim: int):
        super().__init__()
        self.sizes = [len(g.values) for g in groups]
        self.scale = math.sqrt(dim)
        self.image = torch.nn.Linear(dim, sum(self.sizes))
        self.text = torch.nn.Linear(dim, sum(self.sizes))

    def loss(self, features: torch.Tensor, head: torch.nn.Linear, targets: torch.Tensor) -> torch.Tensor:
        """Mean over the groups some sample of the batch states of each group's cross-entropy."""
        logits = head(features.float() * self.scale).split(self.sizes, dim=1)
        terms = [torch.nn.functional.cross_entropy(l, targets[:, g], ignore_index=MISSING)
                 for g, l in enumerate(logits) if (targets[:, g] != MISSING).any()]
        return torch.stack(terms).mean() if terms else features.sum() * 0.0


def attach(model: torch.nn.Module, groups: Sequence[Group], table: dict[bytes, np.ndarray], dim: int) -> None:
    """Put the heads on ``model`` and make its forward return, with the upstream outputs, the
    attribute loss of the batch (``attribute_loss``: image and text heads summed)."""
    heads = AttributeHeads(groups, dim)
    model.add_module(HEAD_PREFIX.rstrip("."), heads)
    missing = np.full(len(groups), MISSING, np.int64)
    forward = model.forward

    def forward_with_attributes(image=None, text=None):
        out = forward(image, text)
        if image is None or text is None or not isinstance(out, dict):
            return out
        rows = text.detach().cpu().numpy()
        targets = torch.from_numpy(np.stack([table.get(r.tobytes(), missing) for r in rows])).to(text.device)
        out["attribute_loss"] = (heads.loss(out["image_features"], heads.image, targets)
                                 + heads.loss(out["text_features"], heads.text, targets))
        return out

    model.forward = forward_with_attributes


class WithAttributeLoss(torch.nn.Module):
    """The upstream loss plus ``weight`` times the model's ``attribute_loss``, logged as its own term."""

    def __init__(self, loss: torch.nn.Module, weight: float):
        super().__init__()
        self.inner, self.weight = loss, weight

    def forward(self, *args, attribute_loss=None, output_dict: bool = False, **kwargs):
        losses = self.inner(*args, output_dict=True, **kwargs)
        if attribute_loss is not None:
            losses["attribute_loss"] = self.weight * attribute_loss
        return losses if output_dict else sum(losses.values())
