"""``traffic-retrieval rerank``: adaption re-ranking of a first-ranking submission with N names a query."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..arguments import (add_data_argument, add_model_arguments, add_query_arguments, announcement, data_folder,
                         encode_settings, model_settings, query_settings)


def run(a: argparse.Namespace) -> int:
    from ...core.fileio import require_writable
    from ...core.layout import find_vocabulary, split_queries_and_gallery
    from ...core.submission import read_submission, validate_submission, write_submission
    from ...retrieval.gallery import encode_gallery
    from ...retrieval.models import load_model
    from ...retrieval.pipeline import rank_queries
    from ...retrieval.rerank import RerankSettings

    require_writable(a.out, "the re-ranked submission")
    data = data_folder(a)
    queries, paths = split_queries_and_gallery(data, a.split, a.strict)
    first = read_submission(a.submission_topn)
    n = len(first[0][1]) if first else 0
    validate_submission(first, queries, {p.name for p in paths}, k=n)
    settings = query_settings(a)
    if settings.rerank is None:  # what this command is for: the default method where the run recorded none
        settings = replace(settings, rerank=RerankSettings())
    loaded = load_model(model_settings(a))
    print(announcement(a), file=sys.stderr)
    gallery = encode_gallery(loaded, paths, encode_settings(a), settings.flip_tta)
    position = {name: i for i, name in enumerate(gallery.names)}
    candidates = np.array([[position[name] for name in names] for _, names in first])
    ranking = rank_queries(loaded, gallery, queries, find_vocabulary(data, a.vocab), settings, first=candidates)
    write_submission(a.out, list(zip(queries, ranking.top_names())))
    print(f"re-ranked {len(queries)} queries ({n} candidates each) in {ranking.rerank_seconds:.3f} s -> {a.out}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "rerank",
        help="adaption re-ranking of a top-N submission",
        description=(
            "Reads a submission with N names a query (infer --topk 50) and the gallery it ranked; encodes the "
            "queries again (routing and prompt as in infer) and takes the gallery embeddings from the cache. "
            "Writes OUT, the re-ranked top-10 submission. The same is available as infer --rerank."
        ),
    )
    p.add_argument("--submission-topn", type=Path, required=True, help="first-ranking submission with N names a query")
    add_data_argument(p, from_run=True)
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--out", type=Path, required=True)
    add_query_arguments(p)
    add_model_arguments(p)
    p.set_defaults(func=run)
