"""ablation: every A3R step switched on in turn, on the synthetic benchmark, over several seeds.

Per seed: draw a dataset; pretrain the tiny CLIP on the complete-caption ``pretrain`` split (the
stand-in for LAION); fine-tune it three ways (no padding; square padding; square padding on the
augmented labels); rank the surveillance-style test split with each ladder step. Writes
``ablation.md`` (mean +- std, official and strict mAP@10, per kind, ranking and re-ranking time),
``ablation.png`` (bar plot) and ``augmentation.md`` (completion accuracy, mAP with and without).
Every training and every augmentation resumes where it stopped, so an interrupted study continues.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.evaluation import evaluate
from ..core.fileio import atomic_open, atomic_write_text
from ..core.labels import read_labels
from ..core.layout import Layout, find_vocabulary
from ..core.routing import DEFAULT_VEHICLE_PROMPT
from ..retrieval.configs import TINY_MODEL
from ..retrieval.encode import EncodeSettings
from ..retrieval.models import ModelSettings, load_model
from ..retrieval.pipeline import QuerySettings, infer
from ..retrieval.rerank import RerankSettings
from ..synthetic.generate import generate
from ..training import augment as aug
from ..training.prepare import prepare
from ..training.train import TrainJob, TrainSettings, default_settings, final_checkpoint, train


@dataclass(frozen=True)
class Step:
    name: str
    model: str  # which fine-tuned model: "nopad", "pad" or "aug"
    prompt: bool = False
    rerank: bool = False
    flip: bool = False


LADDER = (
    Step("baseline", "nopad"),
    Step("+ square padding", "pad"),
    Step("+ augmentation", "aug"),
    Step("+ prompt enhancement", "aug", prompt=True),
    Step("+ re-ranking", "aug", prompt=True, rerank=True),
    Step("+ flip TTA", "aug", prompt=True, rerank=True, flip=True),
)


@dataclass
class StudySettings:
    train: int = 3000
    test: int = 1000
    pretrain: int = 4000
    pretrain_epochs: int = 5
    finetune_epochs: int = 3
    rerank: RerankSettings = field(default_factory=RerankSettings)


def _settings(epochs: int, seed: int, pretrained: Optional[Path] = None) -> TrainSettings:
    """The tiny model's preset (from scratch, or fine-tuning ``pretrained``) with the study's epochs."""
    return replace(default_settings(TINY_MODEL, str(pretrained) if pretrained else None), epochs=epochs, seed=seed)


def _train(csv: Path, logs: Path, name: str, settings: TrainSettings, pretrained: Optional[Path], square_pad: bool) -> Path:
    """The run folder of a training, trained (or resumed) unless its final checkpoint is there."""
    if final_checkpoint(logs, name, settings.epochs).is_file():
        return logs / name
    return train(TrainJob(csv, TINY_MODEL, str(pretrained) if pretrained else None, logs=logs, name=name,
                          square_pad=square_pad, resume=(logs / name).exists()), settings)


def run_seed(seed: int, root: Path, s: StudySettings) -> dict:
    """One seed of the study: the metrics of every ladder step and the augmentation accuracy."""
    root = root / f"seed{seed}"
    data, logs = root / "datasets", root / "log"
    if not (data / "test" / "test_ground_truth.txt").exists():
        generate(data, train=s.train, val=0, test=s.test, seed=seed, pretrain=s.pretrain)
    prepared = prepare(data)
    pretrained = _train(prepared / "pretrain.csv", logs, "pretrain", _settings(s.pretrain_epochs, seed), None, True)
    finetune = _settings(s.finetune_epochs, seed, pretrained)
    models = {
        "nopad": _train(prepared / "train.csv", logs, "finetune-nopad", finetune, pretrained, False),
        "pad": _train(prepared / "train.csv", logs, "finetune-pad", finetune, pretrained, True),
    }
    layout, vocab = Layout(data), find_vocabulary(data)
    augmented_file = aug.augmented_path(data, "train")
    augmented = aug.augment(load_model(ModelSettings(TINY_MODEL, str(pretrained))), layout.labels("train"),
                            layout.images("train"), augmented_file, vocab, EncodeSettings(progress=False))
    accuracy = aug.completion_accuracy(augmented, read_labels(data / "train" / "train_label_truth.txt"), vocab)
    prepared_aug = prepare(data, out=root / "augmented", train_labels=augmented_file)
    models["aug"] = _train(prepared_aug / "train.csv", logs, "finetune-aug", finetune, pretrained, True)
    steps = {}
    for step in LADDER:
        out = root / "submissions" / f"{step.name.strip('+ ').replace(' ', '-')}.json"
        model = ModelSettings(TINY_MODEL, str(models[step.model]), square_pad=step.model != "nopad")
        query = QuerySettings(vehicle_prompt=DEFAULT_VEHICLE_PROMPT if step.prompt else "",
                              rerank=s.rerank if step.rerank else None, flip_tta=step.flip)
        ranking = infer(data, out, model, query, EncodeSettings(cache_dir=root / "cache", progress=False))
        metrics = evaluate(out, data / "test" / "test_ground_truth.txt")
        per_1000 = 1000 / len(ranking.queries)
        metrics["seconds_per_1000"] = {"first": ranking.seconds * per_1000, "rerank": ranking.rerank_seconds * per_1000}
        steps[step.name] = metrics
    return {"seed": seed, "steps": steps, "augmentation": accuracy}


def _mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def ablation_table(results: list[dict]) -> str:
    """Markdown: one row per ladder step, mean ± std over seeds."""
    seeds = ", ".join(str(r["seed"]) for r in results)
    head = ("| step | mAP@10 official | mAP@10 strict | vehicle official | vehicle strict | pedestrian official "
            "| pedestrian strict | ranking s/1k queries | re-ranking s/1k queries |")
    lines = [f"Seeds {seeds}; mean ± std over seeds. Official = the organisers' normalisation (hits in the top 10); "
             "strict = normalised by min(R, 10).", "", head, "|" + "---|" * 9]
    for step in LADDER:
        m = [r["steps"][step.name] for r in results]
        cells = [_mean_std([x["map_official"] for x in m]), _mean_std([x["map_strict"] for x in m])]
        for kind in ("vehicle", "pedestrian"):
            cells += [_mean_std([x["per_kind"][kind][key] for x in m]) for key in ("map_official", "map_strict")]
        cells += [f"{np.mean([x['seconds_per_1000'][k] for x in m]):.3f}" for k in ("first", "rerank")]
        lines.append(f"| {step.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def augmentation_table(results: list[dict]) -> str:
    """Markdown: completion accuracy (overall and per class) and mAP with / without augmentation."""
    lines = ["| part | accuracy | labels completed |", "|---|---|---|"]
    for part in ("colour", "type"):
        acc = [r["augmentation"][part] for r in results]
        lines.append(f"| {part} | {_mean_std([a['accuracy'] for a in acc])} | {np.mean([a['labels'] for a in acc]):.0f} |")
    for part in ("colour", "type"):
        classes = sorted({c for r in results for c in r["augmentation"][part]["per_class"]})
        lines += ["", f"Per true {part}:", "", "| class | accuracy |", "|---|---|"]
        for c in classes:
            lines.append(f"| {c} | {_mean_std([r['augmentation'][part]['per_class'][c] for r in results if c in r['augmentation'][part]['per_class']])} |")
    lines += ["", "| fine-tuned on | mAP@10 official | mAP@10 strict | vehicle official | vehicle strict |", "|---|---|---|---|---|"]
    for name, step in (("original partial labels", "+ square padding"), ("augmented labels", "+ augmentation")):
        m = [r["steps"][step] for r in results]
        lines.append(f"| {name} | {_mean_std([x['map_official'] for x in m])} | {_mean_std([x['map_strict'] for x in m])} | "
                     f"{_mean_std([x['per_kind']['vehicle']['map_official'] for x in m])} | "
                     f"{_mean_std([x['per_kind']['vehicle']['map_strict'] for x in m])} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(LADDER))
    for offset, key in ((-0.2, "map_official"), (0.2, "map_strict")):
        values = np.array([[r["steps"][s.name][key] for s in LADDER] for r in results])
        ax.bar(x + offset, values.mean(0), 0.4, yerr=values.std(0), capsize=3, label=key)
    ax.set_xticks(x, [s.name for s in LADDER], rotation=20, ha="right")
    ax.set_ylabel("mAP@10 (synthetic test split)")
    ax.set_title(f"A3R ablation, {len(results)} seeds (mean ± std)")
    ax.legend()
    fig.tight_layout()
    with atomic_open(out, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def run(seeds: list[int], work: Path, docs: Path, s: StudySettings) -> list[dict]:
    results = []
    for seed in seeds:
        cached = work / f"seed{seed}" / "result.json"
        if not cached.is_file():
            atomic_write_text(cached, json.dumps(run_seed(seed, work, s), indent=1))
        results.append(json.loads(cached.read_text()))
    command = f"traffic-retrieval ablation --seeds {' '.join(map(str, seeds))}"
    atomic_write_text(docs / "ablation.md", "# Ablation of the A3R steps (synthetic benchmark)\n\n"
                      f"Regenerate with `{command}` ({s}).\n\n" + ablation_table(results) + "\n![ablation](ablation.png)\n")
    atomic_write_text(docs / "augmentation.md", "# Zero-shot attribute augmentation (synthetic benchmark)\n\n"
                      f"Regenerate with `{command}`.\n\n" + augmentation_table(results))
    plot(results, docs / "ablation.png")
    return results
