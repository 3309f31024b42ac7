"""``traffic-retrieval index``: a persisted faiss index of a gallery for infer, search and serve."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..arguments import add_data_argument, add_model_arguments, encode_settings, model_settings


def run(a: argparse.Namespace) -> int:
    from ...core.fileio import require_writable
    from ...core.labels import read_queries
    from ...core.layout import Layout, gallery_images
    from ...retrieval.index import build_index
    from ...retrieval.models import load_model

    layout = Layout(a.data)
    require_writable(a.out, "the index", folder=True)
    paths = gallery_images(a.gallery or layout.images("test"))
    queries = read_queries(layout.queries) if layout.queries.is_file() else []
    _, line = build_index(load_model(model_settings(a)), paths, a.out, a.kind, encode_settings(a), a.ef_search,
                          a.nprobe, queries)
    print(line)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ...retrieval.index import HNSW_EF_SEARCH, KINDS

    p = subparsers.add_parser(
        "index",
        help="encode the gallery into a persisted faiss index that infer, search and serve can use",
        description=(
            "Reads the images of --gallery (default DATA/test/test_images), encoding them once into --cache-dir. "
            "Writes OUT/table.json (image names, unreadable images, model) and OUT/index-<id>.faiss, atomically. "
            "flat is exact inner product; hnsw and ivf are approximate and print their recall@10 against exact "
            "(on DATA/test/test_text.txt when present, else on gallery images)."
        ),
    )
    add_data_argument(p)
    p.add_argument("--gallery", type=Path, default=None, help="image folder (default DATA/test/test_images)")
    p.add_argument("--out", type=Path, required=True, help="index folder to write")
    p.add_argument("--kind", choices=KINDS, default="flat", help="flat (exact, default), hnsw or ivf (approximate)")
    p.add_argument("--ef-search", type=int, default=None, help=f"hnsw: candidates per search (default {HNSW_EF_SEARCH})")
    p.add_argument("--nprobe", type=int, default=None, help="ivf: lists searched (default a quarter of them)")
    add_model_arguments(p)
    p.set_defaults(func=run)
