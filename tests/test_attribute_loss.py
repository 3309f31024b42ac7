"""Attribute supervision in fine-tuning (training/attribute_loss.py): the targets a caption's tokens
stand for, the heads on the model, the loss the upstream loop adds, and the run's export without them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch

from traffic_retrieval.core.attribute_groups import MISSING
from traffic_retrieval.retrieval.models import register_configs
from traffic_retrieval.synthetic.generate import generate
from traffic_retrieval.training.attribute_loss import HEAD_PREFIX, WithAttributeLoss, attach, caption_targets
from traffic_retrieval.training.entry import own_options
from traffic_retrieval.training.prepare import prepare
from traffic_retrieval.training.train import TrainJob, TrainSettings, upstream_args

PEDESTRIAN = "0,0,1,0,0,1,0,0,1,0,0,0,0,1,0,0,0,0,0,0,0"  # female, 18-60, back, handbag, long sleeves
CSV = pd.DataFrame({
    "filepath": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"],
    "title": ["This is a white Audi", "A Truck", "A female pedestrian walking.", "This is a white Audi"],
    "attribute": ["white Audi", "Truck", PEDESTRIAN, "white Audi"],
})


def tokenizer():
    register_configs()
    return open_clip.get_tokenizer("TR-ResNet-Tiny")


def test_a_caption_s_tokens_find_what_its_label_states_and_nothing_more():
    tokenize = tokenizer()
    groups, table = caption_targets(CSV, tokenize)
    names = [g.name for g in groups]
    audi, truck, walker = (table[tokenize([t])[0].numpy().tobytes()] for t in CSV["title"][:3])
    assert len(table) == 3  # the repeated caption is one entry
    stated = lambda t: {names[g] for g in np.flatnonzero(t != MISSING)}  # noqa: E731
    assert stated(audi) == {"kind", "colour", "brand"}  # a partial label trains only what it names
    assert stated(truck) == {"kind", "type"}
    assert groups[names.index("colour")].values[audi[names.index("colour")]] == "white"
    assert stated(walker) >= {"kind", "gender", "age", "orientation", "sleeve", "hat"}
    value = lambda name: groups[names.index(name)].values[walker[names.index(name)]]  # noqa: E731
    assert (value("gender"), value("orientation"), value("sleeve"), value("handbag")) == ("female", "back", "long", "yes")


def test_the_heads_on_the_model_train_its_towers_on_the_attributes():
    register_configs()
    torch.manual_seed(0)
    model, _, _ = open_clip.create_model_and_transforms("TR-ResNet-Tiny", output_dict=True)
    groups, table = caption_targets(CSV, tokenizer())
    attach(model, groups, table, open_clip.get_model_config("TR-ResNet-Tiny")["embed_dim"])
    loss = WithAttributeLoss(open_clip.ClipLoss(), 2.0)
    assert any(n.startswith(HEAD_PREFIX) for n, _ in model.named_parameters())  # so the optimizer steps them
    images, texts = torch.randn(4, 3, 64, 64), tokenizer()(list(CSV["title"]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = None
    for _ in range(20):
        opt.zero_grad()
        out = model(images, texts)
        losses = loss(**out, output_dict=True)
        assert set(losses) == {"contrastive_loss", "attribute_loss"}
        before = before if before is not None else losses["attribute_loss"].item()
        sum(losses.values()).backward()
        assert model.visual.trunk.conv1[0].weight.grad.abs().sum() > 0  # it reaches the image tower
        opt.step()
    assert losses["attribute_loss"].item() < 0.5 * before
    assert "attribute_loss" not in model(images, None)  # encoding alone, as inference does, is unchanged
    unknown = tokenizer()(["a caption no label wrote"])
    assert float(model(images[:1], unknown)["attribute_loss"]) == 0.0  # no target, no loss


def test_train_passes_the_weight_to_the_entry_point_which_takes_it_out():
    args = upstream_args(TrainJob("train.csv"), TrainSettings(attribute_loss=0.5, precision="fp32"), None, "cpu")
    rest, own = own_options(args)
    assert args[args.index("--attribute-loss") + 1] == "0.5"
    assert own.attribute_loss == 0.5 and "--attribute-loss" not in rest and own.square_pad
    assert "--attribute-loss" not in upstream_args(TrainJob("train.csv"), TrainSettings(precision="fp32"), None, "cpu")


@pytest.mark.slow
def test_a_supervised_run_logs_the_loss_and_exports_the_model_without_the_heads(tmp_path: Path):
    data = tmp_path / "datasets"
    generate(data, train=32, val=0, test=0, seed=0, workers=1, progress=False)
    csv = prepare(data, progress=False) / "train.csv"
    run = f"""
from pathlib import Path
from traffic_retrieval.training.train import TrainJob, default_settings, train
s = default_settings("TR-ResNet-Tiny")
s.epochs, s.batch_size, s.workers, s.attribute_loss = 1, 16, 0, 1.0
train(TrainJob(Path({str(csv)!r}), "TR-ResNet-Tiny", logs=Path({str(tmp_path / 'log')!r}), name="supervised"), s)
"""
    done = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "Attribute_loss" in (tmp_path / "log" / "supervised" / "out.log").read_text()
    from safetensors import safe_open

    from traffic_retrieval.retrieval.models import ModelSettings, load_model

    with safe_open(str(tmp_path / "log" / "supervised" / "weights" / "epoch_1.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if HEAD_PREFIX in k]
    assert load_model(ModelSettings(None, str(tmp_path / "log" / "supervised"))).name == "TR-ResNet-Tiny"


def test_a_csv_without_the_attribute_column_is_refused_by_name(tmp_path: Path):
    csv = tmp_path / "old.csv"
    CSV.drop(columns="attribute").to_csv(csv, sep="\t", index=False)
    from traffic_retrieval.training.entry import attribute_supervision

    with pytest.raises(SystemExit, match="old.csv has no 'attribute' column"):
        attribute_supervision(["--train-data", str(csv), "--csv-separator", "\t"], "TR-ResNet-Tiny")
