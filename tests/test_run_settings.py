"""A run folder carries its query settings (RUN/query.json): infer, search, serve, index and rerank given
the run rank as the run's own submission was ranked, each flag overriding one setting."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from traffic_retrieval.apps import cli
from traffic_retrieval.core.attribute_groups import attribute_groups
from traffic_retrieval.core.layout import find_vocabulary
from traffic_retrieval.retrieval.encode import EncodeSettings
from traffic_retrieval.retrieval.fusion import AttributeHeads, Fusion
from traffic_retrieval.retrieval.models import ModelSettings
from traffic_retrieval.retrieval.pipeline import QuerySettings, infer
from traffic_retrieval.retrieval.rerank import RerankSettings
from traffic_retrieval.retrieval.run_settings import Overrides, from_record, read_record, record_query_settings, resolve
from traffic_retrieval.retrieval.weights import export_weights


@pytest.fixture(scope="module")
def run(drawn_dataset, tmp_path_factory) -> tuple[Path, Path, QuerySettings]:
    """A run folder as the reproduce notebook leaves it (weights export, params.txt, run.json with its data,
    attribute heads, query.json), random weights; (run, data, the settings it recorded)."""
    data, checkpoint = drawn_dataset("run-settings", 3, train=60, val=0, test=120)
    run = tmp_path_factory.mktemp("runs") / "reproduce"
    export_weights(torch.load(checkpoint), run / "weights" / "epoch_1.safetensors", "TR-ViT-Tiny", 1, torch.float32)
    (run / "params.txt").write_text("model: TR-ViT-Tiny\n")
    (run / "run.json").write_text(json.dumps({"notebook": {"data": str(data)}}))
    torch.manual_seed(1)
    groups = attribute_groups(find_vocabulary(data))
    heads = AttributeHeads(groups, _dim(checkpoint), meta={"model": "TR-ViT-Tiny"})
    heads.save(run / "attribute_heads.safetensors")
    settings = QuerySettings(vehicle_prompt=" seen by a camera", rerank=RerankSettings("mean", top_k=4, weight=0.7),
                             candidates=30, flip_tta=True,
                             fusion=Fusion(AttributeHeads.load(run / "attribute_heads.safetensors"), 0.5, 200, True))
    record_query_settings(run, settings, square_pad=True)
    return run, data, settings


def _dim(checkpoint: Path) -> int:
    return int(torch.load(checkpoint)["text_projection"].shape[1])


def _infer_cli(run: Path, out: Path, *flags: str, cache: Path) -> int:
    return cli.main(["infer", "--pretrained", str(run), "--out", str(out), "--workers", "0", "--cache-dir", str(cache),
                     *flags])


def test_the_record_round_trips_with_the_heads_named_relative_to_the_run(run):
    folder, _, settings = run
    record, path = read_record(folder)
    assert record["fusion"]["heads"] == "attribute_heads.safetensors"  # the folder can move
    back, pad = from_record(record, path)
    assert pad is True and replace(back, fusion=None) == replace(settings, fusion=None)
    assert (back.fusion.weight, back.fusion.candidates, back.fusion.adapt) == (0.5, 200, True)
    assert back.fusion.heads.source == folder / "attribute_heads.safetensors"


def test_infer_given_the_run_ranks_as_the_run_did_on_its_recorded_data(run, tmp_path, capsys):
    folder, data, settings = run
    expected = tmp_path / "expected.json"
    infer(data, expected, ModelSettings(None, str(folder)), settings,
          EncodeSettings(workers=0, cache_dir=tmp_path / "cache", progress=False))
    out = tmp_path / "cli.json"
    assert _infer_cli(folder, out, cache=tmp_path / "cache") == 0  # no --data: the run's
    assert out.read_bytes() == expected.read_bytes()
    err = capsys.readouterr().err
    assert f"data: {data} (recorded by the run" in err
    line = next(l for l in err.splitlines() if l.startswith("query settings:"))
    assert "recorded by the run" in line and "re-ranking mean (top 4, weight 0.7) of 30 candidates" in line
    assert "flip TTA" in line and "weight 0.5 over 200 candidates" in line and "' seen by a camera'" in line


def test_each_flag_overrides_one_recorded_setting(run, tmp_path, capsys):
    folder, data, settings = run
    plain = tmp_path / "plain.json"
    infer(data, plain, ModelSettings(None, str(folder)), QuerySettings(vehicle_prompt=" seen by a camera"),
          EncodeSettings(workers=0, cache_dir=tmp_path / "cache", progress=False))
    out = tmp_path / "cli.json"
    assert _infer_cli(folder, out, "--rerank", "none", "--no-flip-tta", "--attributes", "none",
                      cache=tmp_path / "cache") == 0
    assert out.read_bytes() == plain.read_bytes()
    assert "with rerank='none', flip_tta=False, attributes='none'" in capsys.readouterr().err
    resolved = resolve(folder, Overrides(rerank_weight=0.2, attribute_weight=2.0))
    assert resolved.query.rerank == RerankSettings("mean", top_k=4, weight=0.2)  # the rest as recorded
    assert resolved.query.fusion.weight == 2.0 and resolved.query.fusion.candidates == 200


def test_a_flag_for_a_setting_that_is_off_is_one_line(run, tmp_path, capsys):
    folder, _, _ = run
    code = _infer_cli(folder, tmp_path / "x.json", "--rerank", "none", "--rerank-top-k", "5", cache=tmp_path / "c")
    assert code == 2 and not (tmp_path / "x.json").exists()
    assert "error: rerank_top_k: the re-ranking is off here; turn it on with a re-ranking method" in capsys.readouterr().err


def test_without_a_record_the_package_defaults_apply(drawn_dataset, tmp_path):
    _, checkpoint = drawn_dataset("run-settings", 3, train=60, val=0, test=120)
    resolved = resolve(str(checkpoint))
    assert resolved.record is None and resolved.query == QuerySettings() and resolved.square_pad
    assert "the package's defaults" in resolved.line()


def test_search_and_index_given_the_run_apply_its_settings(run, tmp_path, capsys):
    folder, data, settings = run
    expected = tmp_path / "expected.json"
    infer(data, expected, ModelSettings(None, str(folder)), settings,
          EncodeSettings(workers=0, cache_dir=tmp_path / "cache", progress=False))
    first = json.loads(expected.read_text())["results"][0]
    capsys.readouterr()
    assert cli.main(["search", first["text"], "--pretrained", str(folder), "--workers", "0",
                     "--cache-dir", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out.splitlines()[2:]
    assert [line.split()[1] for line in printed] == first["image_names"]

    index = tmp_path / "index"
    assert cli.main(["index", "--pretrained", str(folder), "--out", str(index), "--workers", "0",
                     "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "with flip TTA" in capsys.readouterr().out  # the run ranks with flip TTA: its index holds it
    out = tmp_path / "indexed.json"
    assert _infer_cli(folder, out, "--index", str(index), cache=tmp_path / "cache") == 0
    assert out.read_bytes() == expected.read_bytes()
    # an index of plain rows does not pass for one with flip TTA
    assert cli.main(["index", "--pretrained", str(folder), "--out", str(tmp_path / "plain"), "--no-flip-tta",
                     "--workers", "0", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert _infer_cli(folder, tmp_path / "x.json", "--index", str(tmp_path / "plain"), cache=tmp_path / "cache") == 2
    assert "index built without flip TTA, asked with it" in capsys.readouterr().err


def test_the_rows_of_a_flip_tta_index_are_the_averaged_ones(run, tmp_path):
    from traffic_retrieval.core.layout import gallery_images
    from traffic_retrieval.retrieval.engines import load_index
    from traffic_retrieval.retrieval.models import load_model
    from traffic_retrieval.retrieval.store import tta_embeddings

    folder, data, _ = run
    assert cli.main(["index", "--pretrained", str(folder), "--out", str(tmp_path / "i"), "--workers", "0",
                     "--cache-dir", str(tmp_path / "cache")]) == 0
    loaded = load_model(ModelSettings(None, str(folder)))
    tta = tta_embeddings(loaded, gallery_images(data / "test" / "test_images"),
                         EncodeSettings(workers=0, cache_dir=tmp_path / "cache", progress=False))
    np.testing.assert_allclose(np.asarray(load_index(tmp_path / "i").store.rows), np.asarray(tta.rows))
