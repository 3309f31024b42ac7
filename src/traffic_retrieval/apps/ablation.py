"""ablation: every step switched on in turn, on the synthetic benchmark, over several seeds.

The ladder is cumulative: the A3R steps (square padding, attribute augmentation, prompt enhancement),
then what this project adds against the web -> surveillance shift (camera degradation in
fine-tuning, a convolutional image tower, attribute supervision in pretraining, its learning rate doubled,
a 256-d embedding, attribute fusion, the heads reading the gallery centred on its own mean), then the query-time extras
(adaption re-ranking, flip TTA), then what the challenge's winners and the unlabelled gallery add (stage 1 twice
as long, the gallery balance, re-ranking dropped under it, the cross-encoder). Per seed: draw a dataset; pretrain each tower the ladder needs on the
complete-caption ``pretrain`` split (the stand-in for LAION), with or without the attribute loss, at
each learning rate the ladder names; fine-tune every
variant; fit the attribute heads; rank the surveillance-style test split at every step.

Writes ``ablation.md`` (mean and sample standard deviation over seeds, official and strict mAP@10,
per kind, each step's effect paired by seed with its 95% confidence interval, and within each seed a
paired bootstrap interval over queries), ``ablation.png`` and ``augmentation.md`` (completion
accuracy); a ladder started at a later step (``first``) writes ``ablation-from-STEP.md`` and its plot. Everything is cached under a folder named by a digest
of the settings, so a changed setting never reuses a result it did not shape; within it every
training, augmentation and seed resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.evaluation import evaluate
from ..core.fileio import atomic_open, atomic_write_text
from ..core.labels import read_labels
from ..core.layout import Layout, find_vocabulary
from ..core.routing import DEFAULT_VEHICLE_PROMPT
from ..retrieval.balance import Balance
from ..retrieval.configs import CONV_MODEL, CONV_MODEL_128, TINY_VIT
from ..retrieval.cross_encoder import CrossEncoding, Matcher, MatcherShape
from ..retrieval.encode import EncodeSettings
from ..retrieval.fusion import Fusion, HeadSettings
from ..retrieval.models import ModelSettings, load_model
from ..retrieval.pipeline import QuerySettings, infer
from ..retrieval.rerank import RerankSettings
from ..synthetic.generate import generate
from ..training import augment as aug
from ..training.heads import HeadData, fit_heads
from ..training.matching import MatcherTraining, train_matcher
from ..training.prepare import prepare
from ..training.train import TrainJob, TrainSettings, default_settings, final_checkpoint, train


@dataclass(frozen=True)
class Variant:
    """One fine-tuned model: its tower, its input transform and its training labels."""

    model: str = TINY_VIT
    square_pad: bool = True
    augmentation: bool = False
    degrade: float = 0.0
    pretrain_attribute_loss: float = 0.0  # weight of the attribute loss in stage 1 (training/attribute_loss.py)
    pretrain_lr: float = 1e-3  # stage 1's learning rate (the tiny preset's before it became 2e-3)
    pretrain_scale: int = 1  # stage 1's epochs, in multiples of the study's

    @property
    def _stage1(self) -> list[str]:
        return [*([f"attr{self.pretrain_attribute_loss:g}"] if self.pretrain_attribute_loss else []),
                f"lr{self.pretrain_lr:g}", *([f"x{self.pretrain_scale}"] if self.pretrain_scale != 1 else [])]

    @property
    def backbone(self) -> str:
        """The stage-1 run this variant fine-tunes: one per tower, attribute-loss weight, learning rate and length."""
        return "-".join(["pretrain", self.model, *self._stage1])

    @property
    def name(self) -> str:
        return "-".join([self.model, "pad" if self.square_pad else "nopad", *(["aug"] if self.augmentation else []),
                         *([f"degrade{self.degrade:g}"] if self.degrade else []), *self._stage1])


@dataclass(frozen=True)
class Step:
    name: str
    variant: Variant
    prompt: bool = False
    fusion: bool = False
    adapt: bool = False  # the heads centre the gallery on its own mean (Fusion.adapt)
    rerank: bool = False
    flip: bool = False
    balance: bool = False  # each image's scores corrected by the query bank (retrieval/balance.py)
    cross: bool = False  # the cross-encoder re-scores the first candidates (retrieval/cross_encoder.py)


_AUG = Variant(TINY_VIT, True, True)
_DEGRADED = replace(_AUG, degrade=0.7)
_CONV = replace(_DEGRADED, model=CONV_MODEL_128)  # the ViT's embedding width, so the step measures the tower
_SUPERVISED = replace(_CONV, pretrain_attribute_loss=4.0)  # the default run's weight, chosen on seed 1
_FASTER = replace(_SUPERVISED, pretrain_lr=2e-3)  # the default run's stage-1 learning rate, chosen on seed 1
_WIDER = replace(_FASTER, model=CONV_MODEL)  # the default run's tower: a 256-d embedding, chosen on seed 1
_LONGER = replace(_WIDER, pretrain_scale=2)  # the default run's stage 1: 4 epochs instead of 2, chosen on seed 1
_QUERY = dict(prompt=True, fusion=True, adapt=True, flip=True)  # what every later step keeps
LADDER = (
    Step("baseline", Variant(TINY_VIT, square_pad=False)),
    Step("+ square padding", Variant(TINY_VIT)),
    Step("+ augmentation", _AUG),
    Step("+ prompt enhancement", _AUG, prompt=True),
    Step("+ camera degradation", _DEGRADED, prompt=True),
    Step("+ convolutional tower", _CONV, prompt=True),
    Step("+ attribute supervision", _SUPERVISED, prompt=True),
    Step("+ stage-1 lr 2e-3", _FASTER, prompt=True),
    Step("+ 256-d embedding", _WIDER, prompt=True),
    Step("+ attribute fusion", _WIDER, prompt=True, fusion=True),
    Step("+ gallery centring", _WIDER, prompt=True, fusion=True, adapt=True),
    Step("+ re-ranking", _WIDER, prompt=True, fusion=True, adapt=True, rerank=True),
    Step("+ flip TTA", _WIDER, prompt=True, fusion=True, adapt=True, rerank=True, flip=True),
    Step("+ stage 1 twice as long", _LONGER, rerank=True, **_QUERY),
    Step("+ gallery balance", _LONGER, rerank=True, balance=True, **_QUERY),
    Step("- re-ranking", _LONGER, balance=True, **_QUERY),  # the default run's: chosen on seed 1 under the balance
    Step("+ cross-encoder", _LONGER, balance=True, cross=True, **_QUERY),
)


@dataclass
class StudySettings:
    """The study's data and schedule (half the default run's sizes, so that three seeds fit in about an hour on 2 cores)."""

    train: int = 6000
    test: int = 1000
    pretrain: int = 6000
    pretrain_epochs: int = 2
    finetune_epochs: int = 1
    rerank: RerankSettings = field(default_factory=RerankSettings)
    fusion_weight: float = 1.0  # the default run's, chosen on seed 1
    heads: HeadData = field(default_factory=lambda: HeadData(degraded=1))
    matcher_epochs: int = 8  # the cross-encoder's (as chosen on seed 1: docs/shift/cross-encoder-seed1.txt)

    def digest(self, steps: tuple[Step, ...] = LADDER) -> str:
        """What names the study's cache folder: every setting and the steps run."""
        text = json.dumps([asdict(self), [asdict(s) for s in steps]], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def slug(name: str) -> str:
    """A step's name as a file name: "+ flip TTA" -> "flip-TTA", "- re-ranking" -> "without-re-ranking"."""
    return name.replace("- ", "without ", 1).strip("+ ").replace(" ", "-")


def ladder_from(first: Optional[str] = None) -> tuple[Step, ...]:
    """The ladder from the step named ``first`` (None: all of it); that step is the reference of the next."""
    names = [s.name for s in LADDER]
    if first is None:
        return LADDER
    if first not in names:
        raise ValueError(f"no ladder step {first!r}: one of {', '.join(names)}")
    return LADDER[names.index(first):]


def _train(csv: Path, logs: Path, name: str, settings: TrainSettings, model: str, pretrained: Optional[Path],
           square_pad: bool) -> Path:
    """The run folder of a training, trained (or resumed) unless its final checkpoint is there."""
    if final_checkpoint(logs, name, settings.epochs).is_file():
        return logs / name
    return train(TrainJob(csv, model, str(pretrained) if pretrained else None, logs=logs, name=name,
                          square_pad=square_pad, resume=(logs / name).exists()), settings)


def _settings(model: str, epochs: int, seed: int, pretrained: Optional[Path] = None, degrade: float = 0.0,
              attribute_loss: float = 0.0, lr: Optional[float] = None) -> TrainSettings:
    """The tiny preset (from scratch, or fine-tuning ``pretrained``) with the study's epochs (and ``lr``
    instead of the preset's, where given)."""
    preset = default_settings(model, str(pretrained) if pretrained else None)
    return replace(preset, epochs=epochs, seed=seed, degrade=degrade, attribute_loss=attribute_loss, lr=lr or preset.lr)


def _matcher(root: Path, variant: Variant, model: ModelSettings, data: Path, vocab, encode: EncodeSettings,
             s: StudySettings, seed: int) -> Matcher:
    """The cross-encoder of a variant's fine-tuned model, trained once (kept under ROOT/matchers)."""
    path = root / "matchers" / f"{variant.name}.safetensors"
    if not path.is_file():
        train_matcher(load_model(model), data, vocab, encode, MatcherShape(),
                      MatcherTraining(epochs=s.matcher_epochs, seed=seed)).save(path)
    return Matcher.load(path)


def run_seed(seed: int, root: Path, s: StudySettings, ladder: tuple[Step, ...] = LADDER) -> dict:
    """One seed of the study: the metrics of every step of ``ladder`` and the augmentation accuracy."""
    root = root / f"seed{seed}"
    data, logs = root / "datasets", root / "log"
    if not (data / "test" / "test_ground_truth.txt").exists():
        generate(data, train=s.train, val=0, test=s.test, seed=seed, pretrain=s.pretrain, progress=False)
    prepared = prepare(data, progress=False)
    layout, vocab = Layout(data), find_vocabulary(data)
    encode = EncodeSettings(cache_dir=root / "cache", workers=0, progress=False)
    variants = sorted({step.variant for step in ladder}, key=lambda v: v.name)
    backbones = {v.backbone: v for v in variants}  # any variant of a backbone names its tower and weight
    pretrained = {b: _train(prepared / "pretrain.csv", logs, b, _settings(v.model, s.pretrain_epochs * v.pretrain_scale, seed,
                                                                           attribute_loss=v.pretrain_attribute_loss,
                                                                           lr=v.pretrain_lr),
                            v.model, None, True) for b, v in sorted(backbones.items())}
    accuracy, csvs = {}, {}
    for b in sorted({v.backbone for v in variants if v.augmentation}):
        labels = root / "augmented" / b / "train_label_augmented.txt"
        completed = aug.augment(load_model(ModelSettings(backbones[b].model, str(pretrained[b]))),
                                layout.labels("train"), layout.images("train"), labels, vocab, encode)
        accuracy[b] = aug.completion_accuracy(completed, read_labels(data / "train" / "train_label_truth.txt"), vocab)
        csvs[b] = prepare(data, out=labels.parent, train_labels=labels, progress=False) / "train.csv"
    runs = {v: _train(csvs[v.backbone] if v.augmentation else prepared / "train.csv", logs, f"finetune-{v.name}",
                      _settings(v.model, s.finetune_epochs, seed, pretrained[v.backbone], v.degrade), v.model,
                      pretrained[v.backbone], v.square_pad) for v in variants}
    heads, matchers = {}, {}
    steps = {}
    for step in ladder:
        model = ModelSettings(step.variant.model, str(runs[step.variant]), square_pad=step.variant.square_pad)
        fusion = None
        if step.fusion:
            if step.variant not in heads:
                heads[step.variant] = fit_heads(load_model(model), data, vocab, encode, s.heads, HeadSettings())
            fusion = Fusion(heads[step.variant], s.fusion_weight, adapt=step.adapt)
        cross = None
        if step.cross:
            if step.variant not in matchers:
                matchers[step.variant] = _matcher(root, step.variant, model, data, vocab, encode, s, seed)
            cross = CrossEncoding(matchers[step.variant])
        query = QuerySettings(vehicle_prompt=DEFAULT_VEHICLE_PROMPT if step.prompt else "", fusion=fusion,
                              rerank=s.rerank if step.rerank else None, flip_tta=step.flip,
                              balance=Balance() if step.balance else None, cross=cross)
        out = root / "submissions" / f"{slug(step.name)}.json"
        ranking = infer(data, out, model, query, encode)
        metrics = evaluate(out, data / "test" / "test_ground_truth.txt", per_query=True)
        per_1000 = 1000 / len(ranking.queries)
        metrics["seconds_per_1000"] = {"first": ranking.seconds * per_1000, "rerank": ranking.rerank_seconds * per_1000}
        steps[step.name] = metrics
    return {"seed": seed, "steps": steps, "augmentation": accuracy}


# Two-sided 95% quantiles of Student's t for 1-9 degrees of freedom (a confidence interval over seeds).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def _mean_std(values: list[float]) -> str:
    """Mean ± sample standard deviation (n - 1 in the denominator)."""
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.3f}"


def paired_effect(before: list[float], after: list[float]) -> str:
    """A step's effect paired by seed: mean difference ± sample std, and its 95% t-interval."""
    d = np.asarray(after) - np.asarray(before)
    if len(d) < 2:
        return f"{d.mean():+.3f}"
    sd = float(np.std(d, ddof=1))
    half = T_975.get(len(d) - 1, 1.96) * sd / np.sqrt(len(d))
    return f"{d.mean():+.3f} ± {sd:.3f} [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]"


def paired_bootstrap(before: list[float], after: list[float], draws: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """A step's effect within one seed: the mean per-query difference of AP and its 95% percentile
    interval, the queries resampled with replacement (both rankings of a query move together)."""
    d = np.asarray(after, np.float64) - np.asarray(before, np.float64)
    means = d[np.random.default_rng(seed).integers(0, len(d), (draws, len(d)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(low), float(high)


def _values(results: list[dict], step: str, key: str, kind: Optional[str] = None) -> list[float]:
    return [(r["steps"][step]["per_kind"][kind] if kind else r["steps"][step])[key] for r in results]


def bootstrap_table(results: list[dict], ladder: tuple[Step, ...] = LADDER) -> str:
    """Markdown: each step's effect against the step above it within each seed (paired bootstrap over
    queries), for the seeds whose results carry per-query APs."""
    results = [r for r in results if all("per_query_official" in m for m in r["steps"].values())]
    if not results:
        return ""
    lines = ["Within each seed, each step's effect on official mAP@10 against the step above it: the mean per-query "
             "difference [95% paired bootstrap interval over the seed's queries, 2,000 resamples].", "",
             "| step | " + " | ".join(f"seed {r['seed']}" for r in results) + " |", "|---|" + "---|" * len(results)]
    for before, step in zip(ladder, ladder[1:]):
        cells = []
        for r in results:
            mean, low, high = paired_bootstrap(r["steps"][before.name]["per_query_official"],
                                               r["steps"][step.name]["per_query_official"])
            cells.append(f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]")
        lines.append(f"| {step.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ablation_table(results: list[dict], ladder: tuple[Step, ...] = LADDER) -> str:
    """Markdown: one row per ladder step (mean ± sample std over seeds), the paired effect of each over
    seeds, and within each seed over queries."""
    seeds = ", ".join(str(r["seed"]) for r in results)
    head = ("| step | mAP@10 official | mAP@10 strict | vehicle official | vehicle strict | pedestrian official "
            "| pedestrian strict | ranking s/1k queries | re-ranking s/1k queries |")
    lines = [f"Seeds {seeds}; mean ± sample standard deviation over seeds. Official = the organisers' normalisation "
             "(hits in the top 10); strict = normalised by min(R, 10).", "", head, "|" + "---|" * 9]
    for step in ladder:
        cells = [_mean_std(_values(results, step.name, k)) for k in ("map_official", "map_strict")]
        for kind in ("vehicle", "pedestrian"):
            cells += [_mean_std(_values(results, step.name, k, kind)) for k in ("map_official", "map_strict")]
        cells += [f"{np.mean([r['steps'][step.name]['seconds_per_1000'][k] for r in results]):.3f}"
                  for k in ("first", "rerank")]
        lines.append(f"| {step.name} | " + " | ".join(cells) + " |")
    lines += ["", "Each step's effect on official mAP@10 against the step above it, paired by seed: mean difference "
              "± sample standard deviation [95% confidence interval, Student's t].", "",
              "| step | all | vehicle | pedestrian |", "|---|---|---|---|"]
    for before, step in zip(ladder, ladder[1:]):
        cells = [paired_effect(_values(results, before.name, "map_official", kind),
                               _values(results, step.name, "map_official", kind)) for kind in (None, "vehicle", "pedestrian")]
        lines.append(f"| {step.name} | " + " | ".join(cells) + " |")
    within = bootstrap_table(results, ladder)
    return "\n".join(lines) + "\n" + (f"\n{within}" if within else "")


def augmentation_table(results: list[dict]) -> str:
    """Markdown: completion accuracy of each stage-1 run's augmentation, overall and per true class."""
    lines = []
    for backbone in sorted({b for r in results for b in r["augmentation"]}):
        lines += [f"## Completed by the stage-1 run {backbone}", "", "| part | accuracy | labels completed |",
                  "|---|---|---|"]
        acc = [r["augmentation"][backbone] for r in results if backbone in r["augmentation"]]
        for part in ("colour", "type"):
            lines.append(f"| {part} | {_mean_std([a[part]['accuracy'] for a in acc])} | "
                         f"{np.mean([a[part]['labels'] for a in acc]):.0f} |")
        for part in ("colour", "type"):
            classes = sorted({c for a in acc for c in a[part]["per_class"]})
            lines += ["", f"Per true {part}:", "", "| class | accuracy |", "|---|---|"]
            lines += [f"| {c} | {_mean_std([a[part]['per_class'][c] for a in acc if c in a[part]['per_class']])} |"
                      for c in classes]
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], out: Path, ladder: tuple[Step, ...] = LADDER) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(len(ladder))
    for offset, (label, kind) in zip((-0.27, 0.0, 0.27), (("all", None), ("vehicle", "vehicle"), ("pedestrian", "pedestrian"))):
        values = np.array([_values(results, s.name, "map_official", kind) for s in ladder])
        err = values.std(1, ddof=1) if values.shape[1] > 1 else None
        ax.bar(x + offset, values.mean(1), 0.27, yerr=err, capsize=2, label=label)
    ax.set_xticks(x, [s.name for s in ladder], rotation=20, ha="right")
    ax.set_ylabel("official mAP@10 (synthetic test split)")
    ax.set_title(f"Ablation, {len(results)} seeds (mean ± sample std)")
    ax.legend()
    fig.tight_layout()
    with atomic_open(out, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def run(seeds: list[int], work: Path, docs: Path, s: StudySettings, first: Optional[str] = None) -> list[dict]:
    """The study over ``seeds`` (the ladder from the step ``first``), cached per seed; writes its docs."""
    ladder = ladder_from(first)
    work = Path(work) / s.digest(ladder)
    results = []
    for seed in seeds:
        cached = work / f"seed{seed}" / "result.json"
        if not cached.is_file():
            atomic_write_text(cached, json.dumps(run_seed(seed, work, s, ladder), indent=1))
        results.append(json.loads(cached.read_text()))
    command = f"traffic-retrieval ablation --seeds {' '.join(map(str, seeds))}"
    name = "ablation" if first is None else f"ablation-from-{slug(first)}"
    if first is not None:
        command += f" --first {first!r}"
    atomic_write_text(docs / f"{name}.md", "# Ablation (synthetic benchmark)\n\n"
                      f"Regenerate with `{command}` ({s}; cache {work}).\n\n" + ablation_table(results, ladder)
                      + f"\n![ablation]({name}.png)\n")
    if first is None:  # a later start leaves the whole ladder's page as it is
        atomic_write_text(docs / "augmentation.md", "# Zero-shot attribute augmentation (synthetic benchmark)\n\n"
                          f"Regenerate with `{command}`.\n\n" + augmentation_table(results))
    plot(results, docs / f"{name}.png", ladder)
    return results
