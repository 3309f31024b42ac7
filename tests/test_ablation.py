"""The ablation study: tables from results, and one tiny seed end to end."""

from __future__ import annotations

from pathlib import Path

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


def test_paired_effect_interval_uses_student_t():
    assert ablation.paired_effect([0.1, 0.2, 0.3], [0.2, 0.2, 0.5]) == "+0.100 ± 0.100 [-0.148, +0.348]"


def test_the_cache_folder_follows_every_setting():
    a, b = ablation.StudySettings(), ablation.StudySettings(fusion_weight=2.0)
    assert a.digest() == ablation.StudySettings().digest() and a.digest() != b.digest()


@pytest.mark.slow
def test_one_tiny_seed_end_to_end(tmp_path: Path):
    settings = ablation.StudySettings(train=120, test=40, pretrain=120, pretrain_epochs=1, finetune_epochs=1)
    results = ablation.run([0], tmp_path / "work", tmp_path / "docs", settings)
    steps = results[0]["steps"]
    assert set(steps) == {s.name for s in ablation.LADDER}
    assert all(0.0 <= m["map_official"] <= 1.0 and m["queries"] == 40 for m in steps.values())
    assert steps["+ re-ranking"]["seconds_per_1000"]["rerank"] > 0
    assert steps["+ attribute fusion"] != steps["+ attribute supervision"]  # the heads change the ranking
    # the supervised steps fine-tune their own stage-1 runs, trained with the attribute loss, the last
    # of them at the doubled learning rate and with the 256-d embedding
    log = tmp_path / "work" / settings.digest() / "seed0" / "log"
    plain, supervised = "pretrain-TR-ResNet-Tiny-128-lr0.001", ablation.LADDER[-1].variant.backbone
    assert supervised == "pretrain-TR-ResNet-Tiny-attr4-lr0.002" and (log / plain).is_dir()
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
