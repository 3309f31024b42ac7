"""Ground truth in either of the two formats a user has, told apart by the first line:

- the organisers' file: ``query text$relevant1.jpg$relevant2.jpg...``, one query a line,
  in query order (the relevant images start at field 2);
- a label file ``image$attribute$caption[$completed]`` (field 2 is an attribute: a flag
  vector or vehicle text, never an image name): its captions are the queries, in file
  order, and a query's relevant images are all images whose attribute equals its line's.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Optional

from .attributes import looks_like_flags, parse_flags
from .fileio import InputError, read_text_lines
from .images import is_image_name
from .labels import SEP, parse_label_lines
from .routing import route
from .vocab import Vocabulary, packaged_vocabulary

GroundTruth = tuple[list[str], list[set[str]], list[str]]  # queries, relevant image sets, kinds
GROUND_TRUTH_FILE = "a ground-truth file (query$image.jpg$..., or a label file)"


def _is_label_line(fields: list[str]) -> bool:
    return len(fields) in (3, 4) and is_image_name(fields[0]) and not is_image_name(fields[1])


def _attribute_key(attribute: str) -> str:
    """Equal attributes compare equal whatever their spacing ("0, 1" == "0,1")."""
    if looks_like_flags(attribute):
        return ",".join(map(str, parse_flags(attribute)))
    return " ".join(attribute.split())


def _read_organisers(path: str | Path, lines: list[tuple[int, str]], vocab: Vocabulary) -> GroundTruth:
    queries, relevant = [], []
    for number, text in lines:
        query, *names = (f.strip() for f in text.split(SEP))
        if not query:
            raise InputError(path, number, "empty query text")
        bad = next((n for n in names if not is_image_name(n)), None)
        if bad is not None:
            raise InputError(path, number, f"{bad!r} is not an image name (expected query$image.jpg$...)")
        queries.append(query)
        relevant.append(set(names))
    if not any(relevant):  # every metric would be 0.0: most likely the query file given as ground truth
        raise InputError(path, None, "no query has a relevant image; expected the ground truth, "
                                     "query$image.jpg$... a line (is this the query file?)")
    return queries, relevant, route(queries, vocab)


def _read_label_file(path: str | Path, lines: list[tuple[int, str]]) -> GroundTruth:
    labels = parse_label_lines(path, lines)
    by_attribute: dict[str, set[str]] = defaultdict(set)
    for label in labels:
        by_attribute[_attribute_key(label.attribute)].add(label.image)
    return (
        [label.caption for label in labels],
        [by_attribute[_attribute_key(label.attribute)] for label in labels],
        [label.kind for label in labels],
    )


def read_ground_truth(path: str | Path, vocab: Optional[Vocabulary] = None) -> GroundTruth:
    """(queries, relevant image sets, kinds) from either ground-truth format (see module doc).

    Queries of the organisers' format get their kind from the query router with ``vocab``
    (default: the packaged challenge vocabulary), as ``infer`` routes them; a label file's
    kinds come from its attributes.
    """
    lines = read_text_lines(path, GROUND_TRUTH_FILE)
    if not lines:
        raise InputError(path, None, "no ground-truth lines")
    if _is_label_line(lines[0][1].split(SEP)):
        return _read_label_file(path, lines)
    return _read_organisers(path, lines, vocab or packaged_vocabulary())
