"""Score a submission against ground truth: mAP@10 (official and strict) and Recall@1/5/10.

Ground truth comes in either of two formats, told apart by the first line:

- the organisers' file: ``query text$relevant1.jpg$relevant2.jpg...``, one query a line,
  in query order (the relevant images start at field 2);
- a label file ``image$attribute$caption[$completed]`` (field 2 is an attribute: a flag
  vector or vehicle text, never an image name): its captions are the queries, in file
  order, and a query's relevant images are all images whose attribute equals its line's.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Callable

from .attributes import looks_like_flags, parse_flags
from .fileio import InputError, atomic_write_text, read_text_lines
from .labels import SEP, parse_label_line
from .metrics import METRIC_KEYS, score
from .submission import SubmissionError, read_submission, validate_submission

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_PEDESTRIAN_WORDS = re.compile(r"\b(pedestrian|man|woman|male|female)\b", re.IGNORECASE)

GroundTruth = tuple[list[str], list[set[str]], list[str]]


def guess_kind(text: str) -> str:
    """"pedestrian" when the query mentions a pedestrian, man, woman, male or female, else "vehicle".

    The one place queries of the organisers' format get a kind; the query router can replace it.
    """
    return "pedestrian" if _PEDESTRIAN_WORDS.search(text) else "vehicle"


def _is_image_name(field: str) -> bool:
    return field.strip().lower().endswith(IMAGE_SUFFIXES)


def _is_label_line(fields: list[str]) -> bool:
    return len(fields) in (3, 4) and _is_image_name(fields[0]) and not _is_image_name(fields[1])


def _attribute_key(attribute: str) -> str:
    """Equal attributes compare equal whatever their spacing ("0, 1" == "0,1")."""
    if looks_like_flags(attribute):
        return ",".join(map(str, parse_flags(attribute)))
    return " ".join(attribute.split())


def _read_organisers(path: str | Path, lines: list[tuple[int, str]], kind_of_query) -> GroundTruth:
    queries, relevant = [], []
    for number, text in lines:
        query, *names = (f.strip() for f in text.split(SEP))
        if not query:
            raise InputError(path, number, "empty query text")
        bad = next((n for n in names if not _is_image_name(n)), None)
        if bad is not None:
            raise InputError(path, number, f"{bad!r} is not an image name (expected query$image.jpg$...)")
        queries.append(query)
        relevant.append(set(names))
    return queries, relevant, [kind_of_query(q) for q in queries]


def _read_label_file(path: str | Path, lines: list[tuple[int, str]]) -> GroundTruth:
    labels = []
    for number, text in lines:
        try:
            labels.append(parse_label_line(text))
        except ValueError as e:
            raise InputError(path, number, str(e)) from None
    by_attribute: dict[str, set[str]] = defaultdict(set)
    for label in labels:
        by_attribute[_attribute_key(label.attribute)].add(label.image)
    return (
        [label.caption for label in labels],
        [by_attribute[_attribute_key(label.attribute)] for label in labels],
        [label.kind for label in labels],
    )


def read_ground_truth(path: str | Path, kind_of_query: Callable[[str], str] = guess_kind) -> GroundTruth:
    """(queries, relevant image sets, kinds) from either ground-truth format (see module doc).

    ``kind_of_query`` gives the kind of a query of the organisers' format, which does not
    say it; a label file's kinds come from its attributes.
    """
    lines = read_text_lines(path)
    if not lines:
        raise InputError(path, None, "no ground-truth lines")
    if _is_label_line(lines[0][1].split(SEP)):
        return _read_label_file(path, lines)
    return _read_organisers(path, lines, kind_of_query)


def gallery_names(gallery_dir: str | Path) -> set[str]:
    """The image file names of a gallery folder."""
    directory = Path(gallery_dir)
    if not directory.is_dir():
        raise InputError(directory, None, "gallery folder does not exist")
    return {p.name for p in directory.iterdir() if p.is_file() and _is_image_name(p.name)}


def evaluate(submission_path: str | Path, ground_truth_path: str | Path, gallery_dir: str | Path | None = None) -> dict:
    """Validate a submission against the ground truth (and gallery), then score it (metrics.score)."""
    queries, relevant, kinds = read_ground_truth(ground_truth_path)
    results = read_submission(submission_path)
    gallery = gallery_names(gallery_dir) if gallery_dir is not None else None
    validate_submission(results, queries, gallery)
    return score([names for _, names in results], relevant, kinds)


def format_table(metrics: dict) -> str:
    """A readable table: one row per query set (all, then each kind), one column per metric."""
    rows = [("all", metrics)] + list(metrics["per_kind"].items())
    header = f"{'queries':<12}{'n':>7}" + "".join(f"{key:>14}" for key in METRIC_KEYS)
    lines = [header]
    for name, m in rows:
        lines.append(f"{name:<12}{m['queries']:>7}" + "".join(f"{m[key]:>14.4f}" for key in METRIC_KEYS))
    lines.append(
        "map_official: the organisers' mAP@10 (divided by hits in the top 10), the headline figure; "
        "map_strict: divided by min(relevant, 10). recall@k: share of queries with a relevant image in the top k."
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        metrics = evaluate(args.submission, args.ground_truth, args.gallery)
    except SubmissionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    line = json.dumps(metrics)
    if args.out is not None:
        atomic_write_text(args.out, line + "\n")
    print(format_table(metrics))
    print(line)
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a submission: mAP@10 (official and strict), Recall@1/5/10",
        description=(
            "Reads a submission JSON and a ground truth (the organisers' 'query$img.jpg$...' file, "
            "or a label file 'image$attribute$caption'), checks the submission answers every query in "
            "order with 10 distinct names (in --gallery when given), prints a table and, as its last "
            "line, the metrics as one JSON object; --out writes that JSON too."
        ),
    )
    p.add_argument("--submission", required=True, type=Path, help="submission JSON to score")
    p.add_argument("--ground-truth", required=True, type=Path, help="ground-truth file (either format)")
    p.add_argument("--gallery", type=Path, default=None, help="gallery image folder: every name must be in it")
    p.add_argument("--out", type=Path, default=None, help="write the metrics JSON here (atomically)")
    p.set_defaults(func=run)
