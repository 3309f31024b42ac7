"""infer: route queries, enhance vehicle prompts, encode the gallery once, rank, write a submission.

``--split test`` ranks ``test/test_images`` for the lines of ``test/test_text.txt``;
``--split val`` ranks the val images for the val captions (scored against the val label file).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .labels import read_labels, read_queries
from .encode import gallery_embeddings, encode_texts, list_images, require_readable, unreadable_summary
from .fileio import InputError
from .index import VectorIndex, add_index_argument, load_index
from .models import TINY_MODEL, LoadedModel, load_model
from .prepare import Layout, default_out
from .rank import topk_blocked
from .rerank import METHODS, RerankSettings, rerank, tta_gallery
from .routing import DEFAULT_VEHICLE_PROMPT, enhance, route, split_by_kind
from .submission import write_submission
from .vocab import Vocabulary, extract_vocabulary

log = logging.getLogger(__name__)
PACKAGED_VOCAB = Path(__file__).with_name("data") / "car_attribute.json"


def find_vocabulary(data: Path, vocab_path: Optional[Path] = None) -> Vocabulary:
    """The given vocabulary, else prepare's output, else one extracted from the train labels,
    else the packaged one (the real challenge's)."""
    for candidate in (vocab_path, default_out(data) / "car_attribute.json"):
        if candidate and Path(candidate).is_file():
            return Vocabulary.load(candidate)
    train = Layout(Path(data)).labels("train")
    if train.is_file():
        vehicles = [l for l in read_labels(train) if l.kind == "vehicle"]
        return extract_vocabulary([l.attribute for l in vehicles], [l.completed for l in vehicles])
    return Vocabulary.load(PACKAGED_VOCAB)


def split_queries_and_gallery(data: Path, split: str) -> tuple[list[str], list[Path]]:
    layout = Layout(Path(data))
    if split == "test":
        return read_queries(layout.queries), list_images(layout.images("test"))
    labels = read_labels(layout.labels(split))
    return [l.caption for l in labels], [layout.images(split) / l.image for l in labels]


@dataclass
class Ranking:
    """The first ranking, with what re-ranking needs."""

    queries: list[str]
    kinds: list[str]
    names: list[str]  # gallery image names, in gallery order
    query_emb: np.ndarray
    gallery_emb: np.ndarray
    ok: np.ndarray  # readable gallery images
    indices: np.ndarray  # n_queries x topk, into names (re-ranked when asked)
    first: np.ndarray  # the first ranking's candidates, n_queries x max(topk, rerank candidates)
    seconds: float  # first ranking time (text encoding + search), gallery encoding excluded
    rerank_seconds: float = 0.0

    def top_names(self, k: Optional[int] = None) -> list[list[str]]:
        return [[self.names[j] for j in row[:k]] for row in self.indices]


def rank_queries(
    loaded: LoadedModel, queries: Sequence[str], gallery: Sequence[Path], vocab: Vocabulary,
    topk: int = 10, vehicle_prompt: str = DEFAULT_VEHICLE_PROMPT, cache_dir: Optional[Path] = None,
    square_pad: bool = True, batch_size: int = 64, workers: int = 2, progress: bool = True,
    flip_tta: bool = False, rerank_settings: Optional[RerankSettings] = None, candidates: int = 50,
    strict: bool = False, chunk: int = 2048, index: Optional[VectorIndex] = None,
) -> Ranking:
    """Rank the gallery for every query (pure apart from the embedding cache); with ``index``, search
    that vector index (built from exactly this gallery) instead of encoding the gallery. Optionally with
    flip TTA of the gallery and adaption re-ranking of the first ``candidates``. Unreadable gallery
    images are never ranked (``strict``: InputError at the first); ``chunk`` images per cache part."""
    encode = dict(cache_dir=cache_dir, square_pad=square_pad, batch_size=batch_size, workers=workers, progress=progress,
                  strict=strict, chunk=chunk)
    if index is not None:
        if flip_tta:
            raise InputError(index.source or "index", None,
                             "--flip-tta encodes the gallery twice; it does not combine with --index")
        index.check(loaded, square_pad, [p.name for p in gallery])
        gallery_emb, ok = index.embeddings(), index.ok
        if strict:
            require_readable(gallery, ok)
    else:
        gallery_emb, ok = gallery_embeddings(loaded, gallery, flip=False, **encode)
    if flip_tta:
        gallery_emb = tta_gallery(gallery_emb, gallery_embeddings(loaded, gallery, flip=True, **encode)[0])
    if not ok.all():
        log.warning("%d of %d gallery images are unreadable and will not be returned", (~ok).sum(), len(ok))
    start = time.perf_counter()
    kinds = route(queries, vocab)
    texts = [enhance(q, kind, vehicle_prompt) for q, kind in zip(queries, kinds)]
    query_emb = encode_texts(loaded, texts)
    k = max(topk, candidates if rerank_settings else 0)
    _, first = index.search(query_emb, k) if index is not None else topk_blocked(query_emb, gallery_emb, k, valid=ok)
    seconds = time.perf_counter() - start
    indices, rerank_seconds = first[:, :topk], 0.0
    if rerank_settings is not None:
        indices, rerank_seconds = rerank(query_emb, gallery_emb, first, rerank_settings, k=topk)
    return Ranking(list(queries), kinds, [p.name for p in gallery], query_emb, gallery_emb, ok, indices, first,
                   seconds, rerank_seconds)


def infer(
    data: Path, out: Path, model: str = TINY_MODEL, pretrained: Optional[str] = None, split: str = "test",
    topk: int = 10, vehicle_prompt: str = DEFAULT_VEHICLE_PROMPT, cache_dir: Optional[Path] = Path("data/cache"),
    square_pad: bool = True, batch_size: int = 64, workers: int = 2, vocab_path: Optional[Path] = None,
    device: Optional[str] = None, progress: bool = True, flip_tta: bool = False,
    rerank_settings: Optional[RerankSettings] = None, candidates: int = 50, strict: bool = False, chunk: int = 2048,
    index: Optional[Path] = None,
) -> Ranking:
    """Run the step and write the submission (``topk`` names a query) atomically; ``index``: a folder
    written by ``traffic-retrieval index`` to search instead of encoding the gallery."""
    vector_index = load_index(index)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_model(model, pretrained, device, "fp32", square_pad)
    queries, gallery = split_queries_and_gallery(data, split)
    ranking = rank_queries(loaded, queries, gallery, find_vocabulary(data, vocab_path), topk, vehicle_prompt,
                           cache_dir, square_pad, batch_size, workers, progress, flip_tta, rerank_settings, candidates,
                           strict, chunk, vector_index)
    write_submission(out, list(zip(queries, ranking.top_names())))
    counts = {k: len(v) for k, v in split_by_kind(ranking.kinds).items()}
    per_1000 = 1000 / max(len(queries), 1)
    print(f"ranked {len(queries)} queries ({counts['vehicle']} vehicle, {counts['pedestrian']} pedestrian) "
          f"against {len(gallery)} images: first ranking {ranking.seconds * per_1000:.3f} s per 1,000 queries"
          + (f", re-ranking {ranking.rerank_seconds * per_1000:.3f} s per 1,000 queries" if rerank_settings else "")
          + f" -> {out}")
    summary = unreadable_summary(gallery, ranking.ok, "gallery images")
    if summary:
        print(f"{summary} (never ranked)", file=sys.stderr)
    return ranking


def optional_path(text: str) -> Optional[Path]:
    """argparse type: '' means none."""
    return Path(text) if text.strip() else None


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=TINY_MODEL, help=f"OpenCLIP model name (default {TINY_MODEL})")
    p.add_argument("--pretrained", default=None, help="OpenCLIP tag (e.g. laion2b_s39b_b160k), checkpoint file, or none")
    p.add_argument("--no-square-pad", dest="square_pad", action="store_false", help="resize without square padding")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "infer",
        help="rank the gallery for every query and write a submission",
        description=(
            "Reads DATA/test/test_images and DATA/test/test_text.txt (or, with --split val, the val images and "
            "captions). Writes OUT, the submission JSON in the official format and query order, and caches the "
            "gallery embeddings under --cache-dir."
        ),
    )
    p.add_argument("--data", type=Path, default=Path("data/datasets"))
    p.add_argument("--out", type=Path, required=True, help="submission JSON to write")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--topk", type=int, default=10, help="names per query (more for re-ranking)")
    p.add_argument("--vehicle-prompt", default=DEFAULT_VEHICLE_PROMPT,
                   help="text appended to vehicle queries ('' disables the prompt enhancement)")
    p.add_argument("--cache-dir", type=optional_path, default=Path("data/cache"), help="embedding cache ('' disables)")
    p.add_argument("--vocab", type=Path, default=None, help="car_attribute.json (default: found next to DATA)")
    p.add_argument("--strict", action="store_true",
                   help="abort at the first unreadable gallery image instead of skipping it (never ranking it)")
    p.add_argument("--chunk", type=int, default=2048, help="gallery images per resumable cache part")
    add_index_argument(p)
    add_rerank_arguments(p)
    add_model_arguments(p)
    p.set_defaults(func=lambda a: infer(
        a.data, a.out, a.model, a.pretrained, a.split, a.topk, a.vehicle_prompt, a.cache_dir,
        a.square_pad, a.batch_size, a.workers, a.vocab, a.device, True, a.flip_tta, rerank_settings(a),
        a.rerank_candidates, a.strict, a.chunk, index=a.index) and 0)


def add_rerank_arguments(p: argparse.ArgumentParser) -> None:
    defaults = RerankSettings()
    p.add_argument("--rerank", choices=("none", *METHODS), default="none",
                   help="adaption re-ranking of the first candidates (default none)")
    p.add_argument("--rerank-candidates", type=int, default=50, help="first-ranked candidates to re-rank (N)")
    p.add_argument("--rerank-top-k", type=int, default=defaults.top_k, help="candidates forming the consensus")
    p.add_argument("--rerank-weight", type=float, default=defaults.weight, help="step towards the consensus")
    p.add_argument("--flip-tta", action="store_true", help="average gallery embeddings with their horizontal flips")


def rerank_settings(a: argparse.Namespace) -> Optional[RerankSettings]:
    if a.rerank == "none":
        return None
    return RerankSettings(method=a.rerank, top_k=a.rerank_top_k, weight=a.rerank_weight)
