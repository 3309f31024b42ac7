"""Score a submission against ground truth: validate it as the organisers' scorer needs, then
mAP@10 (official and strict) and Recall@1/5/10 (``metrics``), overall and per kind."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .fileio import InputError
from .ground_truth import read_ground_truth
from .images import is_image_name
from .metrics import METRIC_KEYS, score
from .submission import read_submission, validate_submission
from .vocab import Vocabulary


def gallery_names(gallery_dir: str | Path) -> set[str]:
    """The image file names of a gallery folder."""
    directory = Path(gallery_dir)
    if not directory.is_dir():
        raise InputError(directory, None, "gallery folder does not exist")
    return {p.name for p in directory.iterdir() if p.is_file() and is_image_name(p.name)}


def evaluate(submission_path: str | Path, ground_truth_path: str | Path, gallery_dir: str | Path | None = None,
             vocab: Optional[Vocabulary] = None, per_query: bool = False) -> dict:
    """Validate a submission against the ground truth (and gallery), then score it (metrics.score)."""
    queries, relevant, kinds = read_ground_truth(ground_truth_path, vocab)
    results = read_submission(submission_path)
    gallery = gallery_names(gallery_dir) if gallery_dir is not None else None
    validate_submission(results, queries, gallery)
    return score([names for _, names in results], relevant, kinds, per_query=per_query)


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
