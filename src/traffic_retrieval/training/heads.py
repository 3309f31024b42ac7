"""Fit the attribute heads of retrieval/fusion.py on a labelled split.

Each training image is encoded as it is and, ``degraded`` times more, through the camera degradation
that training uses (training/degrade.py), so that the heads learn what an attribute looks like in a
surveillance crop, not only in a web photo. Labels are parsed into attribute groups
(core/attribute_groups.py); the parts a partial vehicle label does not state are left out of the loss.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import Compose

from ..core.attribute_groups import attribute_groups, label_targets
from ..core.labels import read_labels
from ..core.layout import Layout, image_folder
from ..core.vocab import Vocabulary
from ..retrieval.encode import EncodeSettings, encode_images
from ..retrieval.fusion import AttributeHeads, HeadSettings
from ..retrieval.models import LoadedModel
from ..retrieval.store import gallery_embeddings
from .degrade import Degradation, Degrade


@dataclass(frozen=True)
class HeadData:
    """Which split the heads learn from, and how many degraded views of each image they see."""

    split: str = "train"
    degraded: int = 3
    seed: int = 0


def degraded_model(loaded: LoadedModel, degradation: Degradation) -> LoadedModel:
    """The model with the camera degradation in front of its transform (after the RGB conversion that
    ``models.with_square_pad`` puts first, before padding)."""
    to_rgb, *rest = loaded.preprocess.transforms
    return replace(loaded, preprocess=Compose([to_rgb, Degrade(degradation), *rest]))


def training_views(loaded: LoadedModel, data: Path, vocab: Vocabulary, encode: EncodeSettings = EncodeSettings(),
                   d: HeadData = HeadData()) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Embeddings (views x images, stacked) and their targets, and the attribute groups."""
    layout = Layout(Path(data))
    labels = read_labels(layout.labels(d.split), allow_empty=False)
    folder = image_folder(layout.images(d.split))
    paths = [folder / label.image for label in labels]
    groups = attribute_groups(vocab)
    targets = np.array([label_targets(label, vocab, groups) for label in labels], np.int64)
    views = [gallery_embeddings(loaded, paths, encode)]
    torch.manual_seed(d.seed)  # the degradations drawn, in the main process and the loader's workers
    noisy = degraded_model(loaded, Degradation(probability=1.0))
    for view in range(d.degraded):
        views.append(encode_images(noisy, paths, replace(encode, cache_dir=None),
                                   desc=f"attributes: degraded view {view + 1}/{d.degraded}"))
    emb = np.concatenate([e[ok] for e, ok in views])
    return emb, np.concatenate([targets[ok] for _, ok in views]), groups


def fit_heads(loaded: LoadedModel, data: Path, vocab: Vocabulary, encode: EncodeSettings = EncodeSettings(),
              d: HeadData = HeadData(), s: HeadSettings = HeadSettings()) -> AttributeHeads:
    """Attribute heads over ``loaded``'s image embeddings, fitted on the labels of ``data``'s split."""
    emb, targets, groups = training_views(loaded, data, vocab, encode, d)
    meta = {"model": loaded.name, "pretrained": loaded.pretrained, "square_pad": loaded.square_pad,
            "split": d.split, "degraded": d.degraded}
    return AttributeHeads(groups, emb.shape[1], s.hidden, meta).fit(emb, targets, s)
