"""``traffic-retrieval search``: one typed query against a gallery, printed as ranked names (and a grid)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..arguments import (add_data_argument, add_index_argument, add_model_arguments, add_query_arguments,
                         announcement, data_folder, encode_settings, model_settings, query_settings)

KINDS = ("auto", "vehicle", "pedestrian")


def add_gallery_arguments(p: argparse.ArgumentParser) -> None:
    """The options search and serve share: where the gallery is, the model, how queries are treated."""
    add_data_argument(p, from_run=True)
    p.add_argument("--gallery", type=Path, default=None, help="image folder (default DATA/test/test_images)")
    p.add_argument("--query-bank", type=Path, default=None,
                   help="queries that the gallery balance weighs each image against (default DATA/test/test_text.txt)")
    add_filter_arguments(p)
    add_query_arguments(p)
    add_index_argument(p)
    add_model_arguments(p)


def add_filter_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--camera", default=None, metavar="LIST",
                   help="keep only images of these cameras, e.g. 12,13,14 (the gallery's metadata)")
    p.add_argument("--after", default=None, metavar="TIME",
                   help="keep only images taken at or after this ISO 8601 time (UTC unless it names a zone)")
    p.add_argument("--before", default=None, metavar="TIME", help="keep only images taken before this time")
    p.add_argument("--metadata", type=Path, default=None, metavar="CSV",
                   help="image,camera,timestamp of the gallery's images (default: GALLERY.metadata.csv beside the "
                        "gallery folder, when there is one; with --index, what index recorded)")


def query_filter(args: argparse.Namespace):
    """The camera and time filter of the command line (core.metadata.Filter)."""
    from ...core.metadata import Filter

    return Filter.parse(args.camera, args.after, args.before)


def open_gallery(args: argparse.Namespace, settings):
    """(loaded model, gallery, vocabulary) from the arguments of ``add_gallery_arguments`` and the query
    ``settings`` (flip TTA encodes the gallery's flips too; the balance weighs it against the query bank)."""
    from ...core.labels import read_queries
    from ...core.layout import Layout, find_vocabulary, gallery_images
    from ...retrieval.gallery import open_folder
    from ...core.fileio import UserError
    from ...retrieval.engines import load_index
    from ...retrieval.models import load_model
    from ...retrieval.pipeline import balance_bias

    data = data_folder(args)
    folder = Path(args.gallery) if args.gallery else Layout(data).images("test")
    gallery_images(folder, args.strict)  # before the model loads: a wrong path or an empty folder fails at once
    bank_file = args.query_bank or Layout(data).queries
    bank = read_queries(bank_file) if settings.balance is not None else None
    query_filter(args)  # a bad timestamp is one line before the model loads
    if args.metadata and args.index:
        raise UserError("--metadata is for a gallery without --index: the index holds what traffic-retrieval index "
                        "recorded (run it again with --metadata to change it)")
    index = load_index(args.index)
    loaded = load_model(model_settings(args))
    print(announcement(args), file=sys.stderr)
    gallery = open_folder(loaded, folder, encode_settings(args), index, settings.flip_tta, args.metadata)
    vocab = find_vocabulary(data, args.vocab)
    if bank is not None:
        gallery.bias = balance_bias(loaded, gallery, bank, vocab, settings)
        print(f"gallery balance over the {len(bank)} queries of {bank_file}", file=sys.stderr)
    return loaded, gallery, vocab


def format_answer(result) -> str:
    lines = [f"query: {result.query}", f"kind: {result.kind}   encoded: {result.text}"]
    width = max((len(h.name) for h in result.hits), default=0)
    lines += [f"{h.rank:>4}  {h.name:<{width}}  {h.score:.4f}" for h in result.hits]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ...core.fileio import require_writable
    from ...retrieval.pipeline import answer

    if args.grid:
        require_writable(args.grid, "the grid PNG")
    settings = query_settings(args)
    loaded, gallery, vocab = open_gallery(args, settings)
    where = query_filter(args)
    result = answer(loaded, gallery, vocab, args.query, args.kind, settings, where)
    if where.active:
        print(f"filter: {where.describe()}")
    print(format_answer(result))
    if args.grid:
        from ..report import plot_topk

        plot_topk([f"{result.query}  [{result.kind}]"], [[h.name for h in result.hits]], None, gallery.folder,
                  args.grid, k=max(1, len(result.hits)))
        print(f"grid -> {args.grid}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="rank the gallery for one typed query and print the top-k",
        description=(
            "Reads the images of --gallery (default DATA/test/test_images), encoding them once into --cache-dir. "
            "Prints rank, image name and score; with --grid, writes a PNG of the top-k thumbnails."
        ),
    )
    p.add_argument("query", help='the description, e.g. "a red SUV"')
    p.add_argument("--kind", choices=KINDS, default="auto",
                   help="auto: route as infer does; vehicle/pedestrian: force it and keep only images of that shape")
    p.add_argument("--grid", type=Path, default=None, help="PNG of the top-k thumbnails to write")
    add_gallery_arguments(p)
    p.set_defaults(func=run)
