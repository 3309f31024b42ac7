"""Training the cross-encoder (retrieval/cross_encoder.py) on a labelled split, with hard negatives
mined by the bi-encoder.

Positives are each training image with its own caption (the augmented one where augmentation
completed it). Negatives are what the bi-encoder confuses: for each image, the captions it ranks
highest whose attributes contradict the image's label (a group both state with different values: a
partial vehicle label contradicts nothing it does not state, so "This is a white Audi SUV" is no
negative for an image labelled "white Audi"), and for each caption the images it ranks highest that
contradict it, as BLIP's ITM samples its negatives from the contrastive similarities. Each image is
read as it is and through the camera degradation of training (``degraded`` views), so that the
matcher meets camera-style tokens. The towers are frozen: their tokens are computed once into
memory (float16) and only the matcher trains, a few seconds an epoch for the tiny model on a CPU.
For ViT-bigG-14 that table is 256 cells x 1,664 channels, 852 KB an image and view: the real train
split's 136k images in two views would need 232 GB, so ``images`` trains on a random subset, and a
table over the memory budget stops before the first token is computed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.attribute_groups import MISSING, attribute_groups, label_targets
from ..core.fileio import UserError
from ..core.labels import read_labels
from ..core.layout import Layout, image_folder
from ..core.vocab import Vocabulary
from ..retrieval.cross_encoder import Matcher, MatcherShape, image_tokens, text_tokens
from ..retrieval.encode import EncodeSettings, encode_batches, encode_images, encode_texts
from ..retrieval.models import LoadedModel
from ..retrieval.rank import default_budget
from .degrade import Degradation
from .heads import degraded_model
from .prepare import training_caption


@dataclass(frozen=True)
class MatcherTraining:
    epochs: int = 8
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    negatives: int = 3  # hard negative captions per image, and hard negative images per caption
    pool: int = 30  # the bi-encoder's top ranks the hard negatives are drawn from
    degraded: int = 1  # degraded views of each image besides the clean one
    split: str = "train"
    seed: int = 0
    images: Optional[int] = None  # a random subset of the split's labelled images (None: all of them)


def contradicts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether attribute targets ``a`` (n x groups) and ``b`` (m x groups) contradict: some group both
    state with different values (n x m)."""
    stated = (a[:, None, :] != MISSING) & (b[None, :, :] != MISSING)
    return (stated & (a[:, None, :] != b[None, :, :])).any(-1)


def hard_negatives(query_emb: np.ndarray, query_targets: np.ndarray, key_emb: np.ndarray, key_targets: np.ndarray,
                   k: int, pool: int, rng: np.random.Generator, block: int = 1024) -> np.ndarray:
    """For each query row, ``k`` keys drawn among the ``pool`` keys the bi-encoder ranks highest that
    contradict it (rows x k; a row with no contradicting key in its pool takes any key), a block of
    rows at a time (a block x keys matrix, never queries x keys)."""
    out = np.empty((len(query_emb), k), np.int64)
    for start in range(0, len(query_emb), block):
        sims = query_emb[start:start + block] @ key_emb.T
        masked = np.where(contradicts(query_targets[start:start + block], key_targets), sims, -np.inf)
        top = np.argpartition(-masked, min(pool, masked.shape[1] - 1), axis=1)[:, :pool]
        for i, row in enumerate(top):
            valid = row[np.isfinite(masked[i, row])]
            out[start + i] = rng.choice(valid if len(valid) else np.arange(len(key_emb)), k, replace=len(valid) < k)
    return out


def check_fits(image_bytes: int, images: int, views: int, budget: int) -> None:
    """UserError when the token table (``images`` x ``views`` x ``image_bytes``) exceeds ``budget``."""
    need = image_bytes * images * views
    if need > budget:
        raise UserError(f"the cross-encoder's image tokens of {images:,} images x {views} views need "
                        f"{need / 2**30:.1f} GiB, over the memory budget of {budget / 2**30:.1f} GiB: train on fewer "
                        f"images (matcher --images N), fewer --degraded-views, or raise --memory-budget")


def _token_views(loaded: LoadedModel, paths: list[Path], encode: EncodeSettings, shape: MatcherShape,
                 degraded: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Image tokens of every path, as it is and ``degraded`` times through the camera degradation
    (views x images x cells x channels, float16), and the readable mask."""
    features = lambda m, images: image_tokens(m, images, shape.image_block)  # noqa: E731
    settings = replace(encode, cache_dir=None)
    views, ok = [], None
    torch.manual_seed(seed)
    for view in range(1 + degraded):
        model = loaded if view == 0 else degraded_model(loaded, Degradation(probability=1.0))
        rows = []
        for batch in encode_batches(model, paths, settings, features=features,
                                    desc=f"matcher: image tokens, view {view + 1}/{1 + degraded}"):
            if not rows:  # the first batch gives the size of an image's tokens
                check_fits(batch[0][0].size * 2, len(paths), 1 + degraded, encode.memory_budget or default_budget())
            rows.append((batch[0].astype(np.float16), batch[1]))
        views.append(np.concatenate([r[0] for r in rows]))
        ok = np.concatenate([r[1] for r in rows]) if ok is None else ok
    return np.stack(views), ok


def train_matcher(loaded: LoadedModel, data: Path, vocab: Vocabulary, encode: EncodeSettings = EncodeSettings(),
                  shape: MatcherShape = MatcherShape(), t: MatcherTraining = MatcherTraining()) -> Matcher:
    """A cross-encoder over ``loaded``'s frozen tokens, trained on ``data``'s labelled split."""
    layout = Layout(Path(data))
    labels = read_labels(layout.labels(t.split), allow_empty=False)
    if t.images is not None and t.images < len(labels):
        chosen = np.sort(np.random.default_rng(t.seed).choice(len(labels), t.images, replace=False))
        labels = [labels[i] for i in chosen]
    folder = image_folder(layout.images(t.split))
    paths = [folder / l.image for l in labels]
    groups = attribute_groups(vocab)
    targets = np.array([label_targets(l, vocab, groups) for l in labels], np.int64)
    captions = [training_caption(l, vocab) for l in labels]
    distinct, caption_of = np.unique(np.array(captions, dtype=object), return_inverse=True)
    caption_targets = np.full((len(distinct), len(groups)), MISSING, np.int64)
    caption_targets[caption_of] = targets  # a caption states what its label states

    tokens, ok = _token_views(loaded, paths, encode, shape, t.degraded, t.seed)
    keep = np.flatnonzero(ok)
    image_emb, _ = encode_images(loaded, [paths[i] for i in keep], replace(encode, progress=False))
    text_emb = encode_texts(loaded, list(distinct))
    rng = np.random.default_rng(t.seed)
    own = caption_of[keep]
    neg_captions = hard_negatives(image_emb, targets[keep], text_emb, caption_targets, t.negatives, t.pool, rng)
    neg_images = hard_negatives(text_emb[own], caption_targets[own], image_emb, targets[keep], t.negatives, t.pool, rng)

    with torch.no_grad():
        states, pad = [], []
        for start in range(0, len(distinct), 256):
            s, p = text_tokens(loaded, list(distinct[start:start + 256]), shape.text_length)
            states.append(s.float().cpu())
            pad.append(p.cpu())
    states, pad = torch.cat(states), torch.cat(pad)
    image_table = torch.from_numpy(tokens[:, keep])  # views x images x cells x C

    torch.manual_seed(t.seed)
    matcher = Matcher(tokens.shape[-1], states.shape[-1], tokens.shape[2], shape,
                      {"model": loaded.name, "pretrained": loaded.pretrained, "split": t.split})
    opt = torch.optim.AdamW(matcher.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    n = len(keep)
    # (image row, caption row, label): own caption, hard negative captions, hard negative images
    pairs = np.concatenate([
        np.stack([np.arange(n), own, np.ones(n, np.int64)], 1),
        np.stack([np.repeat(np.arange(n), t.negatives), neg_captions.ravel(), np.zeros(n * t.negatives, np.int64)], 1),
        np.stack([neg_images.ravel(), np.repeat(own, t.negatives), np.zeros(n * t.negatives, np.int64)], 1),
    ])
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(2.0 * t.negatives))
    steps = t.epochs * ((len(pairs) + t.batch_size - 1) // t.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, t.lr, total_steps=steps, pct_start=0.1)
    matcher.train()
    with tqdm(total=steps, desc="matcher: train", unit="step", disable=not encode.progress) as bar:
        for _ in range(t.epochs):
            order = rng.permutation(len(pairs))
            for start in range(0, len(pairs), t.batch_size):
                batch = pairs[order[start:start + t.batch_size]]
                view = torch.from_numpy(rng.integers(0, image_table.shape[0], len(batch)))
                image = image_table[view, torch.from_numpy(batch[:, 0])].float()
                c = torch.from_numpy(batch[:, 1])
                logits = matcher(image, states[c], pad[c])
                loss = loss_fn(logits, torch.from_numpy(batch[:, 2]).float())
                opt.zero_grad()
                loss.backward()
                opt.step()
                schedule.step()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                bar.update()
    return matcher.eval()
