"""Results a person reads: a markdown table of the scores and a figure of top-10 lists."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Optional, Sequence

from ..core.fileio import atomic_open, atomic_write_text
from ..core.images import SquarePad, load_image
from ..core.metrics import METRIC_KEYS


def results_table(metrics: dict, title: str = "Results") -> str:
    """Markdown: one row for all queries and one per kind; official mAP@10 is the headline."""
    head = "| queries | n | " + " | ".join(METRIC_KEYS) + " |"
    rule = "|" + "---|" * (len(METRIC_KEYS) + 2)
    rows = [("all", metrics), *metrics.get("per_kind", {}).items()]
    body = [f"| {name} | {m['queries']} | " + " | ".join(f"{m[k]:.4f}" for k in METRIC_KEYS) + " |" for name, m in rows]
    note = ("map_official is the organisers' mAP@10 (normalised by the hits in the top 10); map_strict is "
            "normalised by min(relevant images, 10); recall@k is the share of queries with a hit in the top k.")
    return "\n".join([f"## {title}", "", head, rule, *body, "", note, ""])


def write_results_table(path: str | Path, metrics: dict, title: str = "Results") -> None:
    atomic_write_text(path, results_table(metrics, title))


def plot_topk(
    queries: Sequence[str], rankings: Sequence[Sequence[str]], relevant: Optional[Sequence[set[str]]],
    image_dir: str | Path, out: str | Path, k: int = 10, thumb: int = 96,
) -> Path:
    """One row a query: its text, then the top-k images, hits framed green and misses red
    (``relevant=None``: no ground truth, plain grey frames)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    relevant = [None] * len(queries) if relevant is None else relevant
    fig, axes = plt.subplots(len(queries), k, figsize=(k * 1.3, len(queries) * 1.9), squeeze=False)
    for row, (query, names, rel) in enumerate(zip(queries, rankings, relevant)):
        for col in range(k):
            ax = axes[row][col]
            ax.set_xticks([]), ax.set_yticks([])
            if col >= len(names):
                ax.axis("off")
                continue
            image = SquarePad()(load_image(Path(image_dir) / names[col]))  # as the model sees it: equal tiles
            image.thumbnail((thumb, thumb))
            ax.imshow(image)
            hit = rel is not None and names[col] in rel
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:grey" if rel is None else "tab:green" if hit else "tab:red")
                spine.set_linewidth(3)
            ax.set_xlabel(f"{col + 1}{' hit' if hit else ''}", fontsize=7)
        title = axes[row][0].set_title("\n".join(textwrap.wrap(query, 150)), fontsize=7, loc="left", x=0, ha="left")
        title.set_in_layout(False)  # a long query spans the row, not the first tile
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.35 / fig.get_figheight(), bottom=0.2 / fig.get_figheight(),
                        wspace=0.08, hspace=0.75)
    out = Path(out)
    with atomic_open(out, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
    return out


def plot_ranking_figure(
    submission: str | Path, ground_truth: str | Path, image_dir: str | Path, out: str | Path, per_kind: int = 2,
) -> Path:
    """plot_topk for the first ``per_kind`` queries of each kind of a scored submission."""
    from ..core.ground_truth import read_ground_truth
    from ..core.submission import read_submission

    queries, relevant, kinds = read_ground_truth(ground_truth)
    results = read_submission(submission)
    chosen = [i for kind in sorted(set(kinds)) for i in [j for j, k in enumerate(kinds) if k == kind][:per_kind]]
    return plot_topk([queries[i] for i in chosen], [results[i][1] for i in chosen], [relevant[i] for i in chosen],
                     image_dir, out)
