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
from ..core.fileio import UserError, require_writable
from ..core.images import unreadable_summary
from ..core.metadata import Filter
from ..core.layout import find_vocabulary, split_queries_and_gallery
from ..core.routing import DEFAULT_VEHICLE_PROMPT, enhance, route, split_by_kind
from ..core.submission import write_submission
from ..core.vocab import Vocabulary
from .encode import EncodeSettings, encode_texts
from .balance import Balance, image_bias
from .cross_encoder import CrossEncoding, cross_rescore
from .fusion import MIN_ADAPT, Fusion, attribute_matrix, attribute_scores
from .gallery import Gallery, encode_gallery
from .engines import load_index
from .rank import default_budget, row_blocks
from .models import LoadedModel, ModelSettings, load_model
from .rerank import CANDIDATES, RerankSettings, rerank

log = logging.getLogger(__name__)

BALANCE_CANDIDATES = 1000  # first-ranked candidates that the balance's bias re-orders (as fusion's)


@dataclass(frozen=True)
class QuerySettings:
    """What happens to queries: the prompt, how many names, attribute fusion, re-ranking and flip TTA."""

    topk: int = 10
    vehicle_prompt: str = DEFAULT_VEHICLE_PROMPT  # "" disables the prompt enhancement
    rerank: Optional[RerankSettings] = None
    candidates: int = CANDIDATES  # first-ranked candidates that re-ranking reorders
    flip_tta: bool = False  # average gallery embeddings with their horizontal flips
    fusion: Optional[Fusion] = None  # attribute heads fused with the similarity (retrieval/fusion.py)
    balance: Optional[Balance] = None  # each image's scores corrected by the query bank (retrieval/balance.py)
    cross: Optional[CrossEncoding] = None  # the cross-encoder re-scores the first candidates (cross_encoder.py)

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
    where: Optional[Filter] = None,
) -> Ranking:
    """Rank the gallery for every query. ``kind`` None routes each query by the vocabulary and searches
    the whole gallery; a kind forces it on every query and keeps only gallery images of that kind.
    ``where`` keeps only images of its cameras and time range, inside the search (``Gallery.search``).
    ``first`` (n_queries x N gallery indices) supplies the first ranking instead of searching."""
    start = time.perf_counter()
    kinds = route(queries, vocab) if kind is None else [kind] * len(queries)
    texts = [enhance(q, k, settings.vehicle_prompt) for q, k in zip(queries, kinds)]
    query_emb = encode_texts(loaded, texts)
    fusion = settings.fusion
    bias = None
    if settings.balance is not None:
        bias = gallery.bias if gallery.bias is not None else balance_bias(loaded, gallery, queries, vocab, settings)
    k = max(settings.topk, settings.candidates if settings.rerank else 0, fusion.candidates if fusion else 0,
            BALANCE_CANDIDATES if bias is not None else 0, settings.cross.candidates if settings.cross else 0)
    if first is None:
        scores, first = gallery.search(query_emb, k, kind, where)
    else:
        scores = np.einsum("nd,nkd->nk", query_emb, gallery.embeddings[first]) if len(first) else first.astype(np.float32)
    prior = None
    if (fusion is not None or bias is not None) and len(first):
        first, scores, prior = fuse(loaded, gallery, queries, kinds, vocab, fusion, first, scores, bias)
    seconds = time.perf_counter() - start
    depth = max(settings.topk, settings.cross.candidates if settings.cross else 0)
    indices, scores, rerank_seconds = first[:, :depth], scores[:, :depth], 0.0
    if settings.rerank is not None:
        start = time.perf_counter()
        n = settings.candidates
        indices, scores = rerank(query_emb, gallery.embeddings, first[:, :n], settings.rerank, k=depth,
                                 prior=None if prior is None else prior[:, :n])
        rerank_seconds = time.perf_counter() - start
    if settings.cross is not None and len(indices):
        start = time.perf_counter()
        indices, scores = cross_rescore(loaded, gallery, queries, indices, scores, settings.cross)
        rerank_seconds += time.perf_counter() - start
    indices, scores = indices[:, :settings.topk], scores[:, :settings.topk]
    return Ranking(list(queries), kinds, texts, gallery.names, query_emb, indices, scores, first, gallery.ok,
                   seconds, rerank_seconds)


def _targets(fusion: Fusion, queries: Sequence[str], kinds: Sequence[str], vocab: Vocabulary) -> np.ndarray:
    return np.array([query_targets(q, kd, vocab, fusion.heads.groups) for q, kd in zip(queries, kinds)], np.int64)


def _centre(fusion: Fusion, gallery: Gallery) -> Optional[np.ndarray]:
    """The gallery's own mean for heads that read it centred (``fusion.adapt``), where it has at least
    MIN_ADAPT readable images; else None (the training mean)."""
    return gallery.mean() if fusion.adapt and int(np.sum(gallery.ok)) >= MIN_ADAPT else None


def fuse(
    loaded: LoadedModel, gallery: Gallery, queries: Sequence[str], kinds: Sequence[str], vocab: Vocabulary,
    fusion: Optional[Fusion], first: np.ndarray, scores: np.ndarray, bias: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first candidates re-ordered by similarity plus the attribute term (fusion.py, where ``fusion``
    is given) plus each image's ``bias`` (balance.py, where given), with their fused scores and the prior
    alone (the two terms), all in the similarity's units (the attribute term divided by the logit scale)."""
    prior = np.zeros(first.shape, np.float32)
    if fusion is not None:
        fusion.heads.check(loaded.name, gallery.embeddings.shape[1])
        prior += fusion.weight / loaded.logit_scale * attribute_scores(
            fusion.heads, _targets(fusion, queries, kinds, vocab), gallery.embeddings, first, _centre(fusion, gallery))
    if bias is not None:
        prior += bias[first]
    order = np.argsort(-(scores + prior), axis=1, kind="stable")
    pick = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    return pick(first), pick(scores + prior), pick(prior)


def bank_scores(
    loaded: LoadedModel, gallery: Gallery, bank: Sequence[str], vocab: Vocabulary, settings: QuerySettings,
) -> tuple[np.ndarray, np.ndarray]:
    """(the first ranking's fused score of every distinct query of ``bank`` for every gallery image, how
    often each is asked): what the balance is computed from, routed and prompted as ``rank_queries``
    does. InputError when the matrix would exceed the gallery's memory budget."""
    kinds = route(bank, vocab)
    texts = [enhance(q, k, settings.vehicle_prompt) for q, k in zip(bank, kinds)]
    distinct, first, counts = np.unique(np.array(texts, dtype=object), return_index=True, return_counts=True)
    need = len(distinct) * len(gallery) * 4
    if need > (gallery.budget or default_budget()):
        raise UserError(f"the balance over {len(distinct)} distinct queries and {len(gallery)} images needs "
                        f"{need / 2**30:.1f} GiB, over the memory budget: raise --memory-budget or pass --no-balance")
    q_emb = encode_texts(loaded, [texts[i] for i in first])
    scores = np.empty((len(distinct), len(gallery)), np.float32)
    for start, rows in row_blocks(gallery.embeddings, 65536):
        scores[:, start:start + len(rows)] = q_emb @ rows.T
    fusion = settings.fusion
    if fusion is not None:
        fusion.heads.check(loaded.name, gallery.embeddings.shape[1])
        targets = _targets(fusion, [bank[i] for i in first], [kinds[i] for i in first], vocab)
        scores += fusion.weight / loaded.logit_scale * attribute_matrix(fusion.heads, targets, gallery.embeddings,
                                                                        _centre(fusion, gallery))
    return scores, counts


def balance_bias(
    loaded: LoadedModel, gallery: Gallery, bank: Sequence[str], vocab: Vocabulary, settings: QuerySettings,
) -> np.ndarray:
    """Each gallery image's bias from the query ``bank`` (balance.py), with the settings' fusion."""
    scores, counts = bank_scores(loaded, gallery, bank, vocab, settings)
    return image_bias(scores, counts, gallery.ok, settings.balance or Balance())


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
    settings: QuerySettings = QuerySettings(), where: Optional[Filter] = None,
) -> Answer:
    """One typed query (search, serve): ``kind`` "auto" routes it as infer does over the whole gallery;
    "vehicle" or "pedestrian" forces it and keeps only images of that kind; ``where`` keeps only images
    of its cameras and time range."""
    if kind not in ("auto", "vehicle", "pedestrian"):
        raise ValueError(f"kind must be auto, vehicle or pedestrian, not {kind!r}")
    r = rank_queries(loaded, gallery, [query], vocab, settings, None if kind == "auto" else kind, where=where)
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
