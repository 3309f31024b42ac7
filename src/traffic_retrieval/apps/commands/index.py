"""``traffic-retrieval index``: a persisted index of a gallery (faiss or Milvus) for infer, search and serve."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..arguments import (add_data_argument, add_model_arguments, announcement, data_folder, encode_settings,
                         model_settings, positive, recorded)


def run(a: argparse.Namespace) -> int:
    from ...core.fileio import UserError, require_writable
    from ...core.labels import read_queries
    from ...core.layout import Layout, gallery_images
    from ...retrieval.engines import build_index, gallery_metadata
    from ...retrieval.models import load_model

    layout = Layout(data_folder(a))
    require_writable(a.out, "the index", folder=True)
    if a.uri and a.backend != "milvus":
        raise UserError("--uri names a Milvus server: pass --backend milvus with it")
    if a.backend == "milvus" and a.kind == "ivfpq":
        raise UserError("--backend milvus builds flat or hnsw, not ivfpq (Milvus Lite builds no IVF_PQ; "
                        "docs/vector-engines.md): pass --kind flat or hnsw, or --backend faiss")
    paths = gallery_images(a.gallery or layout.images("test"), a.strict)
    gallery_metadata(paths, a.metadata)  # a defect in the metadata is one line before the model loads
    queries = read_queries(layout.queries) if layout.queries.is_file() else []
    depth = {"ivfpq": a.nprobe, "hnsw": a.ef_search}.get(a.kind)
    loaded = load_model(model_settings(a))
    if announcement(a):
        print(announcement(a), file=sys.stderr)
    _, line = build_index(loaded, paths, a.out, a.kind, encode_settings(a), depth, queries,
                          recorded(a, "flip_tta", False), a.backend, a.uri, a.metadata, a.rebuild)
    print(line)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ...retrieval.engines import BACKENDS
    from ...retrieval.index import KINDS, RECALL_TARGET

    p = subparsers.add_parser(
        "index",
        help="encode the gallery into a persisted index (faiss or Milvus) that infer, search and serve can use",
        description=(
            "Reads the images of --gallery (default DATA/test/test_images), encoding them once into --cache-dir. "
            "Writes OUT/embeddings-<id>/ (the gallery's half-precision shards, image names and sizes: links to the "
            "cache where the file system allows), OUT/index-<id>.faiss for an approximate kind, and OUT/table.json "
            "(kind, search depth, model), each atomically. flat is exact, streamed from the shards; ivfpq and hnsw "
            f"are approximate: their search depth is tuned to the least reaching recall@10 {RECALL_TARGET} against "
            "exact on half of the queries of DATA/test/test_text.txt (else of gallery images), and their recall "
            "on the other half is printed. --backend milvus writes the vectors into Milvus instead: Milvus Lite in "
            "OUT/milvus-<id>.db, or the server of --uri (flat or hnsw). Run again over a grown or shrunk gallery, "
            "it updates the index in OUT (same model, engine, kind and flip TTA): only new or changed images are "
            "encoded, deleted ones are removed. GALLERY.metadata.csv beside the gallery folder (or --metadata) "
            "gives each image's camera and time, for search and serve's --camera, --after and --before."
        ),
    )
    add_data_argument(p, from_run=True)
    p.add_argument("--gallery", type=Path, default=None, help="image folder (default DATA/test/test_images)")
    p.add_argument("--out", type=Path, required=True, help="index folder to write")
    p.add_argument("--kind", choices=KINDS, default="flat",
                   help="flat (exact, default), ivfpq (approximate, compressed: for millions of images) or hnsw "
                        "(approximate, holds the gallery in memory)")
    p.add_argument("--backend", choices=BACKENDS, default="faiss",
                   help="faiss (default: the reference, in the index folder) or milvus (Milvus Lite in the index "
                        "folder, or a server with --uri; docs/vector-engines.md)")
    p.add_argument("--uri", default=None,
                   help="milvus: a Milvus server, e.g. http://host:19530 (default: Milvus Lite in OUT)")
    p.add_argument("--metadata", type=Path, default=None, metavar="CSV",
                   help="image,camera,timestamp of the gallery's images (default: GALLERY.metadata.csv beside "
                        "the gallery folder, when there is one)")
    p.add_argument("--rebuild", action="store_true",
                   help="build the index anew even where the one in OUT could be updated")
    p.add_argument("--ef-search", type=positive, default=None, help="hnsw: candidates per search (default: tuned)")
    p.add_argument("--nprobe", type=positive, default=None, help="ivfpq: lists searched (default: tuned)")
    p.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=None,
                   help="index each image's embedding averaged with its horizontal flip's (default: as the run folder "
                        "given as --pretrained recorded, else off); infer, search and serve with flip TTA need it")
    add_model_arguments(p)
    p.set_defaults(func=run)
