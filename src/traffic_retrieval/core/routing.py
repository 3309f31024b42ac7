"""Query routing: vehicle or pedestrian, and the seed's prompt enhancement for vehicle queries.

A query is a vehicle query when it names a type or a brand of the vocabulary; everything else
is a pedestrian query. Routing keeps each query's original index so that per-kind results
merge back in the original order (the organisers' scorer reads queries in file order).
"""

from __future__ import annotations

import re
from typing import Sequence, TypeVar

from .attributes import Kind
from .vocab import Vocabulary

# The seed appended this to vehicle queries to bridge web-photo training and camera test images.
DEFAULT_VEHICLE_PROMPT = " image taken by traffic surveillance cameras"

T = TypeVar("T")


def _vocabulary_pattern(vocab: Vocabulary) -> re.Pattern[str]:
    names = sorted(set(vocab.types) | set(vocab.brands), key=len, reverse=True)
    if not names:  # an empty alternation would match the empty string: nothing is a vehicle
        return re.compile(r"(?!)")
    return re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(n) for n in names) + r")(?![\w-])")


def route(queries: Sequence[str], vocab: Vocabulary) -> list[Kind]:
    """The kind of each query, in order."""
    pattern = _vocabulary_pattern(vocab)
    return ["vehicle" if pattern.search(q) else "pedestrian" for q in queries]


def split_by_kind(kinds: Sequence[Kind]) -> dict[Kind, list[int]]:
    """Original indices of each kind, in order."""
    out: dict[Kind, list[int]] = {"vehicle": [], "pedestrian": []}
    for i, kind in enumerate(kinds):
        out[kind].append(i)
    return out


def merge_by_index(parts: dict[Kind, tuple[list[int], list[T]]], n: int) -> list[T]:
    """Put per-kind results (indices, values) back into one list in the original order."""
    merged: list = [None] * n
    for indices, values in parts.values():
        if len(indices) != len(values):
            raise ValueError("each kind needs one result per index")
        for i, v in zip(indices, values):
            merged[i] = v
    missing = [i for i, v in enumerate(merged) if v is None]
    if missing:
        raise ValueError(f"no result for query index {missing[0]}")
    return merged


def enhance(query: str, kind: Kind, vehicle_prompt: str = DEFAULT_VEHICLE_PROMPT) -> str:
    """The text actually encoded: vehicle queries get the prompt appended (before a final period)."""
    if kind != "vehicle" or not vehicle_prompt:
        return query
    return query.rstrip().rstrip(".") + vehicle_prompt
