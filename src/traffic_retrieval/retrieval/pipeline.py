"""The query pipeline: route -> prompt -> encode -> rank -> optional attribute fusion -> optional
re-rank, one path for every command (infer, rerank, search, serve) and the ablation.

``rank_queries`` is the pipeline over an encoded ``Gallery``; ``infer`` is the step around it that
reads a split of the challenge layout, loads the model and writes the submission.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..core.attribute_groups import query_targets
from ..core.fileio import require_writable
from ..core.images import unreadable_summary
from ..core.layout import find_vocabulary, split_queries_and_gallery
from ..core.routing import DEFAULT_VEHICLE_PROMPT, enhance, route, split_by_kind
from ..core.submission import write_submission
from ..core.vocab import Vocabulary
from .encode import EncodeSettings, encode_texts
from .fusion import MIN_ADAPT, Fusion, attribute_scores
from .gallery import Gallery, encode_gallery
from .index import load_index
from .models import LoadedModel, ModelSettings, load_model
from .rerank import CANDIDATES, RerankSettings, rerank

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuerySettings:
    """What happens to queries: the prompt, how many names, attribute fusion, re-ranking and flip TTA."""

    topk: int = 10
    vehicle_prompt: str = DEFAULT_VEHICLE_PROMPT  # "" disables the prompt enhancement
    rerank: Optional[RerankSettings] = None
    candidates: int = CANDIDATES  # first-ranked candidates that re-ranking reorders
    flip_tta: bool = False  # average gallery embeddings with their horizontal flips
    fusion: Optional[Fusion] = None  # attribute heads fused with the similarity (retrieval/fusion.py)

    def __post_init__(self) -> None:
        if self.topk < 1 or self.candidates < 1:
            raise ValueError(f"topk and candidates must be at least 1, not {self.topk} and {self.candidates}")


@dataclass
class Ranking:
    """The ranking of a list of queries, with what re-ranking and reports need."""

    queries: list[str]
    kinds: list[str]  # the kind each query was treated as
    texts: list[str]  # what was encoded: the query, with the prompt enhancement where it applies
    names: list[str]  # gallery image names, in gallery order
    query_emb: np.ndarray
    indices: np.ndarray  # n_queries x topk, into names (re-ranked when asked)
    scores: np.ndarray  # the ranking scores of ``indices``
    first: np.ndarray  # the first ranking's candidates, n_queries x max(topk, candidates)
    ok: np.ndarray  # readable gallery images
    seconds: float  # first ranking (text encoding + search), gallery encoding excluded
    rerank_seconds: float = 0.0

    def top_names(self, k: Optional[int] = None) -> list[list[str]]:
        return [[self.names[j] for j in row[:k]] for row in self.indices]


def rank_queries(
    loaded: LoadedModel, gallery: Gallery, queries: Sequence[str], vocab: Vocabulary,
    settings: QuerySettings = QuerySettings(), kind: Optional[str] = None, first: Optional[np.ndarray] = None,
) -> Ranking:
    """Rank the gallery for every query. ``kind`` None routes each query by the vocabulary and searches
    the whole gallery; a kind forces it on every query and keeps only gallery images of that kind.
    ``first`` (n_queries x N gallery indices) supplies the first ranking instead of searching."""
    start = time.perf_counter()
    kinds = route(queries, vocab) if kind is None else [kind] * len(queries)
    texts = [enhance(q, k, settings.vehicle_prompt) for q, k in zip(queries, kinds)]
    query_emb = encode_texts(loaded, texts)
    fusion = settings.fusion
    k = max(settings.topk, settings.candidates if settings.rerank else 0, fusion.candidates if fusion else 0)
    if first is None:
        scores, first = gallery.search(query_emb, k, kind)
    else:
        scores = np.einsum("nd,nkd->nk", query_emb, gallery.embeddings[first]) if len(first) else first.astype(np.float32)
    prior = None
    if fusion is not None and len(first):
        first, scores, prior = fuse(loaded, gallery, queries, kinds, vocab, fusion, first, scores)
    seconds = time.perf_counter() - start
    indices, scores, rerank_seconds = first[:, :settings.topk], scores[:, :settings.topk], 0.0
    if settings.rerank is not None:
        start = time.perf_counter()
        n = settings.candidates
        indices, scores = rerank(query_emb, gallery.embeddings, first[:, :n], settings.rerank, k=settings.topk,
                                 prior=None if prior is None else prior[:, :n])
        rerank_seconds = time.perf_counter() - start
    return Ranking(list(queries), kinds, texts, gallery.names, query_emb, indices, scores, first, gallery.ok,
                   seconds, rerank_seconds)


def fuse(
    loaded: LoadedModel, gallery: Gallery, queries: Sequence[str], kinds: Sequence[str], vocab: Vocabulary,
    fusion: Fusion, first: np.ndarray, scores: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first candidates re-ordered by similarity plus the attribute term (fusion.py), with their fused
    scores and the attribute term alone, both in the similarity's units (divided by the logit scale).
    With ``fusion.adapt`` the heads read the gallery centred on its own mean, where it has at least
    MIN_ADAPT readable images."""
    fusion.heads.check(loaded.name, gallery.embeddings.shape[1])
    groups = fusion.heads.groups
    targets = np.array([query_targets(q, kd, vocab, groups) for q, kd in zip(queries, kinds)], np.int64)
    centre = gallery.mean() if fusion.adapt and int(np.sum(gallery.ok)) >= MIN_ADAPT else None
    prior = fusion.weight / loaded.logit_scale * attribute_scores(fusion.heads, targets, gallery.embeddings, first,
                                                                  centre)
    order = np.argsort(-(scores + prior), axis=1, kind="stable")
    pick = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    return pick(first), pick(scores + prior), pick(prior)


@dataclass
class Hit:
    rank: int
    name: str
    score: float


@dataclass
class Answer:
    query: str
    kind: str  # the kind the query was treated as
    text: str  # what was encoded
    hits: list[Hit]


def answer(
    loaded: LoadedModel, gallery: Gallery, vocab: Vocabulary, query: str, kind: str = "auto",
    settings: QuerySettings = QuerySettings(),
) -> Answer:
    """One typed query (search, serve): ``kind`` "auto" routes it as infer does over the whole gallery;
    "vehicle" or "pedestrian" forces it and keeps only images of that kind."""
    if kind not in ("auto", "vehicle", "pedestrian"):
        raise ValueError(f"kind must be auto, vehicle or pedestrian, not {kind!r}")
    r = rank_queries(loaded, gallery, [query], vocab, settings, None if kind == "auto" else kind)
    hits = [Hit(i + 1, gallery.names[j], float(s)) for i, (j, s) in enumerate(zip(r.indices[0], r.scores[0]))]
    return Answer(query, r.kinds[0], r.texts[0], hits)


def infer(
    data: Path, out: Path, model: ModelSettings, query: QuerySettings = QuerySettings(),
    encode: EncodeSettings = EncodeSettings(), split: str = "test", vocab_path: Optional[Path] = None,
    index_dir: Optional[Path] = None, announce: str = "",
) -> Ranking:
    """The infer step: rank a split's gallery for its queries and write the submission (``query.topk``
    names a query) atomically; ``index_dir``: a folder from ``traffic-retrieval index`` to search
    instead of encoding the gallery. The inputs and ``out`` are checked before the model loads, and
    ``announce`` (what the command applies) is printed to stderr once it has loaded: a mistake stays one line."""
    require_writable(out, "the submission")
    queries, paths = split_queries_and_gallery(data, split, encode.strict)
    index = load_index(index_dir)
    loaded = load_model(model)
    if announce:
        print(announce, file=sys.stderr)
    gallery = encode_gallery(loaded, paths, encode, query.flip_tta, index)
    ranking = rank_queries(loaded, gallery, queries, find_vocabulary(data, vocab_path), query)
    write_submission(out, list(zip(queries, ranking.top_names())))
    counts = {k: len(v) for k, v in split_by_kind(ranking.kinds).items()}
    per_1000 = 1000 / max(len(queries), 1)
    print(f"ranked {len(queries)} queries ({counts['vehicle']} vehicle, {counts['pedestrian']} pedestrian) "
          f"against {len(paths)} images: first ranking {ranking.seconds * per_1000:.3f} s per 1,000 queries"
          + (f", re-ranking {ranking.rerank_seconds * per_1000:.3f} s per 1,000 queries" if query.rerank else "")
          + f" -> {out}")
    summary = unreadable_summary(paths, gallery.ok, "gallery images")
    if summary:
        print(f"{summary} (never ranked)", file=sys.stderr)
    readable = int(gallery.ok.sum())
    if readable < query.topk:
        print(f"warning: the gallery has {readable} readable images: each query lists {readable} names, "
              f"not {query.topk} (the official scorer expects 10)", file=sys.stderr)
    return ranking
