"""``traffic-retrieval serve``: the local search page over a gallery."""

from __future__ import annotations

import argparse

from .search import add_gallery_arguments, open_gallery


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..arguments import query_settings
    from ..web import create_app

    loaded, gallery, vocab = open_gallery(args)
    app = create_app(gallery, loaded, vocab, query_settings(args))
    print(f"{len(gallery)} images from {gallery.folder}; open http://{args.host}:{args.port}/")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="a local search page over the gallery",
        description=(
            "Reads the images of --gallery (default DATA/test/test_images), encoding them once into --cache-dir, "
            "then serves a search page and a JSON API (/api/search?q=...&kind=auto&k=10&prompt=1) on HOST:PORT. "
            "Writes nothing else."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    add_gallery_arguments(p)
    p.set_defaults(func=run)
