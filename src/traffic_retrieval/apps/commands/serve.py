"""``traffic-retrieval serve``: the local search page over a gallery."""

from __future__ import annotations

import argparse

from .search import add_gallery_arguments, open_gallery, query_filter


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..arguments import query_settings
    from ..web import allowed_hosts, create_app

    hosts = allowed_hosts(args.host, args.allowed_host)
    settings = query_settings(args)
    where = query_filter(args)
    loaded, gallery, vocab = open_gallery(args, settings)
    app = create_app(gallery, loaded, vocab, settings, hosts=hosts, where=where)
    print(f"{len(gallery)} images from {gallery.folder}; open http://{args.host}:{args.port}/ "
          f"(answering the Host names {', '.join(sorted(hosts))}; --allowed-host adds one)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="a local search page over the gallery",
        description=(
            "Reads the images of --gallery (default DATA/test/test_images), encoding them once into --cache-dir, "
            "then serves a search page and a JSON API (/api/search?q=...&kind=auto&k=10&prompt=1) on HOST:PORT. "
            "Writes nothing else. Answers only requests addressed to HOST (and localhost for a loopback or "
            "0.0.0.0 HOST) or to an --allowed-host, 400 to others: a web page cannot reach it by DNS rebinding. "
            "--camera, --after and --before restrict every request (which may narrow them further: "
            "&camera=12,13&after=...&before=...)."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a further Host name to answer, e.g. the machine's name when HOST is 0.0.0.0 (repeatable; "
                        "'*' answers any)")
    add_gallery_arguments(p)
    p.set_defaults(func=run)
