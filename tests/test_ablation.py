"""The ablation study: tables from results, and one tiny seed end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from traffic_retrieval.apps import ablation

KINDS = ("vehicle", "pedestrian")


def _metrics(value: float) -> dict:
    m = {"map_official": value, "map_strict": value / 2, "queries": 10}
    return {**m, "per_kind": {k: dict(m) for k in KINDS}, "seconds_per_1000": {"first": 1.0, "rerank": 0.1}}


def _result(seed: int, offset: float) -> dict:
    steps = {step.name: _metrics(0.1 * i + offset) for i, step in enumerate(ablation.LADDER)}
    accuracy = {part: {"accuracy": 0.5 + offset, "labels": 40, "per_class": {"red": 0.5 + offset}} for part in ("colour", "type")}
    return {"seed": seed, "steps": steps, "augmentation": {"pretrain-TR-ViT-Tiny": accuracy}}


def test_tables_give_mean_and_sample_std_over_seeds_and_paired_effects():
    results = [_result(0, 0.0), _result(1, 0.02), _result(2, 0.04)]
    table = ablation.ablation_table(results)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    names = [r.split(" | ")[0].strip("| ") for r in rows]
    assert names[1:len(ablation.LADDER) + 1] == [s.name for s in ablation.LADDER]
    assert "| baseline | 0.020 ± 0.020 | 0.010 ± 0.010 |" in table  # sample std of 0, 0.02, 0.04
    # every step adds 0.1 on every seed: a paired effect of +0.1 with no spread, whatever the seeds' offsets
    assert "| + square padding | +0.100 ± 0.000 [+0.100, +0.100] |" in table
    augmentation = ablation.augmentation_table(results)
    assert "| colour | 0.520 ± 0.020 | 40 |" in augmentation and "stage-1 run pretrain-TR-ViT-Tiny" in augmentation


def test_within_each_seed_a_paired_bootstrap_over_queries():
    rng = np.random.default_rng(0)
    before = rng.uniform(0, 1, 500)
    mean, low, high = ablation.paired_bootstrap(before, before + 0.05 + rng.normal(0, 0.1, 500))
    assert 0.0 < low < mean < high and abs(mean - 0.05) < 0.02  # a real gain: the interval clears zero
    assert ablation.paired_bootstrap(before, before) == (0.0, 0.0, 0.0)
    mean, low, high = ablation.paired_bootstrap(before, rng.permutation(before))  # same scores, other queries
    assert low < 0.0 < high
    results = [_result(0, 0.0), _result(2, 0.02)]
    for r in results:
        for i, m in enumerate(r["steps"].values()):
            m["per_query_official"] = [0.1 * i, 0.1 * i + 0.2]  # every step: +0.1 on each query
    table = ablation.ablation_table(results)
    assert "| seed 0 | seed 2 |" in table and "| + square padding | +0.100 [+0.100, +0.100] | +0.100 [+0.100, +0.100] |" in table


def test_a_ladder_can_start_at_a_later_step():
    ladder = ablation.ladder_from("+ gallery balance")
    assert ladder[0].name == "+ gallery balance" and ladder[-1] == ablation.LADDER[-1]
    assert ablation.StudySettings().digest(ladder) != ablation.StudySettings().digest()
    assert ablation.slug("- re-ranking") == "without-re-ranking" and ablation.slug("+ flip TTA") == "flip-TTA"
    with pytest.raises(ValueError, match="no ladder step"):
        ablation.ladder_from("+ magic")


def test_paired_effect_interval_uses_student_t():
    assert ablation.paired_effect([0.1, 0.2, 0.3], [0.2, 0.2, 0.5]) == "+0.100 ± 0.100 [-0.148, +0.348]"


def test_the_cache_folder_follows_every_setting():
    a, b = ablation.StudySettings(), ablation.StudySettings(fusion_weight=2.0)
    assert a.digest() == ablation.StudySettings().digest() and a.digest() != b.digest()


@pytest.mark.slow
def test_one_tiny_seed_end_to_end(tmp_path: Path):
    settings = ablation.StudySettings(train=120, test=40, pretrain=120, pretrain_epochs=1, finetune_epochs=1,
                                      matcher_epochs=1)
    results = ablation.run([0], tmp_path / "work", tmp_path / "docs", settings)
    steps = results[0]["steps"]
    assert set(steps) == {s.name for s in ablation.LADDER}
    assert all(0.0 <= m["map_official"] <= 1.0 and m["queries"] == 40 for m in steps.values())
    assert steps["+ re-ranking"]["seconds_per_1000"]["rerank"] > 0
    assert steps["+ attribute fusion"] != steps["+ attribute supervision"]  # the heads change the ranking
    assert all(len(m["per_query_official"]) == 40 for m in steps.values())
    root = tmp_path / "work" / settings.digest() / "seed0"
    assert [p.name for p in (root / "matchers").iterdir()] == [f"{ablation.LADDER[-1].variant.name}.safetensors"]
    # the supervised steps fine-tune their own stage-1 runs, trained with the attribute loss, the last
    # of them at the doubled learning rate and with the 256-d embedding
    log = tmp_path / "work" / settings.digest() / "seed0" / "log"
    plain, supervised = "pretrain-TR-ResNet-Tiny-128-lr0.001", ablation.LADDER[-1].variant.backbone
    assert supervised == "pretrain-TR-ResNet-Tiny-attr4-lr0.002-x2" and (log / plain).is_dir()
    assert "epochs: 2" in (log / supervised / "params.txt").read_text().splitlines()  # twice the study's 1
    assert "epochs: 1" in (log / "pretrain-TR-ResNet-Tiny-attr4-lr0.002" / "params.txt").read_text().splitlines()
    assert {"pretrain-TR-ResNet-Tiny-128-attr4-lr0.001", "pretrain-TR-ResNet-Tiny-128-attr4-lr0.002"} <= {
        p.name for p in log.iterdir()}
    assert "Attribute_loss" in (log / supervised / "out.log").read_text()
    assert "Attribute_loss" not in (log / plain / "out.log").read_text()
    assert "lr: 0.002" in (log / supervised / "params.txt").read_text().splitlines()
    assert "lr: 0.001" in (log / plain / "params.txt").read_text().splitlines()
    assert (tmp_path / "docs" / "ablation.png").stat().st_size > 5_000
    assert "+ flip TTA" in (tmp_path / "docs" / "ablation.md").read_text()
    assert "Per true colour" in (tmp_path / "docs" / "augmentation.md").read_text()
    # resumable: a second run reuses the finished seed without training
    before = sorted(p.stat().st_mtime_ns for p in (tmp_path / "work").rglob("epoch_*.pt"))
    ablation.run([0], tmp_path / "work", tmp_path / "docs", settings)
    assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "work").rglob("epoch_*.pt")) == before
