"""The challenge's prediction file, and the checks its scorer silently relies on.

``{"results": [{"text": "This is a grey Chery Sedan.", "image_names": ["a.jpg", ...]}]}``,
one entry per query in the order of the query file. The organisers' scorer scores nothing
when the order is off, so :func:`validate_submission` names the first offending query
instead of letting a broken file score zero.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from .fileio import UserError, atomic_open, require_file

Submission = list[tuple[str, list[str]]]


class SubmissionError(UserError, ValueError):
    """A submission that is malformed or does not answer the queries it must answer."""


def _query(i: int, text: object) -> str:
    return f"query {i} ({text!r})"


def parse_submission(data: object, source: str = "submission") -> Submission:
    """The (text, image names) pairs of a decoded JSON document; SubmissionError on a wrong shape."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise SubmissionError(f'{source}: expected a JSON object {{"results": [...]}}')
    results = []
    for i, entry in enumerate(data["results"]):
        if not isinstance(entry, dict):
            raise SubmissionError(f'{source}: query {i}: expected an object {{"text", "image_names"}}')
        text, names = entry.get("text"), entry.get("image_names")
        if not isinstance(text, str):
            raise SubmissionError(f'{source}: query {i}: "text" must be a string')
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SubmissionError(f'{source}: {_query(i, text)}: "image_names" must be a list of strings')
        results.append((text, names))
    return results


def read_submission(path: str | Path) -> Submission:
    """Read a submission file; invalid UTF-8 or JSON raises SubmissionError naming file:line:column."""
    data = require_file(path, 'a submission JSON file ({"results": [...]})').read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise SubmissionError(f"{path}:{line}:{column}: bytes that are not UTF-8") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise SubmissionError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except RecursionError:
        raise SubmissionError(f"{path}: JSON nested too deeply") from None
    return parse_submission(document, str(path))


def write_submission(path: str | Path, results: Iterable[tuple[str, Sequence[str]]]) -> None:
    """Write atomically: UTF-8, one result per line."""
    entries = [json.dumps({"text": text, "image_names": list(names)}, ensure_ascii=False) for text, names in results]
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write('{"results": [\n' + ",\n".join(entries) + "\n]}\n")


def validate_submission(
    results: Submission,
    queries: list[str],
    gallery: set[str] | None = None,
    k: int = 10,
) -> None:
    """Raise SubmissionError at the first query whose entry the scorer would not accept.

    Each entry must repeat its query's text (compared whitespace-trimmed) in query order and
    list exactly ``k`` distinct image names, all in ``gallery`` when one is given.
    """
    for i, ((text, names), query) in enumerate(zip(results, queries)):
        where = _query(i, text)
        if text.strip() != query.strip():
            raise SubmissionError(f"{where}: expected the text {query!r} (queries must be in query-file order)")
        if len(names) != k:
            raise SubmissionError(f"{where}: lists {len(names)} image names, expected exactly {k}")
        duplicate = next((n for j, n in enumerate(names) if n in names[:j]), None)
        if duplicate is not None:
            raise SubmissionError(f"{where}: lists {duplicate!r} more than once")
        if gallery is not None:
            unknown = next((n for n in names if n not in gallery), None)
            if unknown is not None:
                raise SubmissionError(f"{where}: {unknown!r} is not an image of the gallery")
    if len(results) < len(queries):
        i = len(results)
        raise SubmissionError(
            f"submission answers {len(results)} queries, expected {len(queries)}: {_query(i, queries[i])} is missing"
        )
    if len(results) > len(queries):
        i = len(queries)
        raise SubmissionError(
            f"submission answers {len(results)} queries, expected {len(queries)}: {_query(i, results[i][0])} is extra"
        )
