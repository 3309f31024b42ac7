"""``traffic-retrieval infer``: rank a split's gallery for its queries and write the submission."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..arguments import (add_data_argument, add_index_argument, add_model_arguments, add_query_arguments,
                         announcement, data_folder, encode_settings, model_settings, query_settings)


def run(a: argparse.Namespace) -> int:
    from ...retrieval.pipeline import infer

    data = data_folder(a)
    infer(data, a.out, model_settings(a), query_settings(a), encode_settings(a), a.split, a.vocab, a.index,
          announcement(a))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "infer",
        help="rank the gallery for every query and write a submission",
        description=(
            "Reads DATA/test/test_images and DATA/test/test_text.txt (or, with --split val, the val images and "
            "captions). Writes OUT, the submission JSON in the official format and query order, and caches the "
            "gallery embeddings under --cache-dir. Given a run folder as --pretrained, it ranks as the run's own "
            "submission was ranked (RUN/query.json: prompt, attribute heads, centring, re-ranking, flip TTA), on the "
            "data the run recorded; each flag overrides one setting, and one line on stderr says what applies."
        ),
    )
    add_data_argument(p, from_run=True)
    p.add_argument("--out", type=Path, required=True, help="submission JSON to write")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--chunk", type=int, default=2048, help="gallery images per resumable cache part")
    add_query_arguments(p)
    add_index_argument(p)
    add_model_arguments(p)
    p.set_defaults(func=run)
