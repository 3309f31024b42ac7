"""The real path, checked on a CPU: the device and precision policy, the autocast path, run folders
and their weights-only exports, the bigG training preset, and model loading errors as messages."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from traffic_retrieval.apps import cli
from traffic_retrieval.core.fileio import InputError, UserError
from traffic_retrieval.retrieval import device as policy
from traffic_retrieval.retrieval.device import DeviceError, Placement, choose_device, cuda_missing_reason
from traffic_retrieval.retrieval.encode import EncodeSettings, encode_images, encode_texts
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.retrieval.store import cache_key
from traffic_retrieval.retrieval.weights import export_weights, latest_checkpoint, resolve_weights
from traffic_retrieval.training.memory import estimate_training_memory, parameter_count
from traffic_retrieval.training.train import TrainJob, default_settings, plan

BIG = "ViT-bigG-14"
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model(ModelSettings())


def images(folder: Path, n: int = 4) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (60 + 10 * i, 40), (40 * i, 200 - 30 * i, 90)).save(folder / f"{i}.jpg")
    return sorted(folder.iterdir())


# ------------------------------------------------------------------ the policy

@needs_no_cuda
def test_a_large_model_without_cuda_is_an_error_that_says_why():
    with pytest.raises(DeviceError, match="ViT-bigG-14 needs a GPU.*no NVIDIA GPU or driver.*--device cpu"):
        choose_device(BIG)
    assert choose_device(BIG, "cpu").type == "cpu"  # asked for explicitly
    assert choose_device("TR-ViT-Tiny").type == "cpu"  # the package's own model runs on a CPU
    with pytest.raises(DeviceError, match="--device cuda"):
        choose_device("TR-ViT-Tiny", "cuda")


def test_why_cuda_is_missing(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "CPU-only" in cuda_missing_reason()
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(policy, "driver_cuda_version", lambda: 12040)
    assert "driver supports CUDA 12.4, older than the CUDA 13.0" in cuda_missing_reason()
    monkeypatch.setattr(policy, "driver_cuda_version", lambda: 0)
    assert "no NVIDIA GPU or driver" in cuda_missing_reason()


def test_precision_policy():
    assert policy.inference_precision(torch.device("cpu")) == "fp32"
    assert policy.training_precision("cpu") == "fp32"


@needs_no_cuda
def test_infer_with_bigg_on_a_cpu_machine_fails_within_seconds(tmp_path, capsys):
    data = tmp_path / "data"
    images(data / "test" / "test_images")
    (data / "test" / "test_text.txt").write_text("A red SUV.\n")
    start = time.perf_counter()
    code = cli.main(["infer", "--model", BIG, "--pretrained", "none", "--data", str(data), "--out", str(tmp_path / "x.json")])
    assert code == 2 and time.perf_counter() - start < 30
    err = capsys.readouterr().err
    assert err.startswith("error: ViT-bigG-14 needs a GPU") and "Traceback" not in err
    assert not (tmp_path / "x.json").exists()


def test_autocast_path_gives_the_fp32_embeddings(tiny, tmp_path):
    """The CUDA path runs the forward passes under 16-bit autocast; on a CPU bf16 autocast exercises it."""
    paths = images(tmp_path / "g")
    texts = ["a red SUV", "a woman with a backpack"]
    settings = EncodeSettings(workers=0, progress=False)
    fp32_images, _ = encode_images(tiny, paths, settings)
    fp32_texts = encode_texts(tiny, texts)
    tiny.placement = Placement(torch.device("cpu"), "bf16")
    try:
        bf16_images, ok = encode_images(tiny, paths, settings)
        bf16_texts = encode_texts(tiny, texts)
    finally:
        tiny.placement = Placement(torch.device("cpu"), "fp32")
    assert ok.all() and bf16_images.dtype == np.float32
    assert (bf16_images * fp32_images).sum(1).min() > 0.98 and (bf16_texts * fp32_texts).sum(1).min() > 0.98
    assert not np.array_equal(bf16_images, fp32_images)  # the autocast path really ran


def test_precision_is_part_of_the_embedding_cache_key(tiny, tmp_path):
    paths = images(tmp_path / "g", 2)
    fp32 = cache_key(tiny, paths, flip=False)
    tiny.placement = Placement(torch.device("cpu"), "bf16")
    try:
        assert cache_key(tiny, paths, flip=False) != fp32
    finally:
        tiny.placement = Placement(torch.device("cpu"), "fp32")
    assert cache_key(tiny, paths, flip=False) == fp32


# ------------------------------------------------------------------ run folders and exports

def fake_run(folder: Path, model: str = "TR-ViT-Tiny") -> Path:
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "params.txt").write_text(f"batch_size: 64\nmodel: {model}\nname: {folder.name}\n")
    return folder


def test_weights_only_export_round_trip(tiny, tmp_path):
    run = fake_run(tmp_path / "run")
    state = tiny.model.state_dict()
    torch.save({"epoch": 1, "state_dict": state, "optimizer": {}}, run / "checkpoints" / "epoch_1.pt")
    export_weights(state, run / "weights" / "epoch_1.safetensors", "TR-ViT-Tiny", 1, torch.float32)
    export_weights(state, run / "weights" / "epoch_2.safetensors", "TR-ViT-Tiny", 2, torch.bfloat16)
    assert latest_checkpoint(run).name == "epoch_2.safetensors"  # the export, the latest epoch

    loaded = load_model(ModelSettings(None, str(run / "weights" / "epoch_1.safetensors")))
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, state[key]), key  # fp32 export: the same weights
    half = load_model(ModelSettings(None, str(run)))
    assert half.pretrained == str(run / "weights" / "epoch_2.safetensors") and half.name == "TR-ViT-Tiny"
    q = encode_texts(tiny, ["a red SUV"])
    assert float((encode_texts(half, ["a red SUV"]) @ q.T)[0, 0]) > 0.99  # bf16 weights: the same model, rounded
    size = (run / "weights" / "epoch_2.safetensors").stat().st_size
    assert size < 0.6 * (run / "weights" / "epoch_1.safetensors").stat().st_size  # half precision on disk


def test_a_run_folder_names_its_model_and_an_explicit_model_must_agree(tiny, tmp_path):
    run = fake_run(tmp_path / "run")
    export_weights(tiny.model.state_dict(), run / "weights" / "epoch_1.safetensors", "TR-ViT-Tiny", 1, torch.float32)
    assert resolve_weights(str(run)).model == "TR-ViT-Tiny"
    assert resolve_weights(str(run / "checkpoints" / "..")).model == "TR-ViT-Tiny"
    with pytest.raises(UserError, match="--model ViT-B-32 but .* was trained as TR-ViT-Tiny"):
        load_model(ModelSettings("ViT-B-32", str(run)))
    other = fake_run(tmp_path / "big", BIG)
    export_weights(tiny.model.state_dict(), other / "weights" / "epoch_5.safetensors", BIG, 5, torch.bfloat16)
    assert resolve_weights(str(other)).model == BIG  # quick-review -p pretrained log/bigG builds bigG
    assert resolve_weights(str(other / "weights" / "epoch_5.safetensors")).model == BIG


@pytest.mark.parametrize("case, message", [
    ("text", "not a checkpoint"),
    ("truncated", "not a readable checkpoint, truncated or corrupt"),
    ("other model", "holds weights of another model than TR-ViT-Tiny"),
])
def test_bad_checkpoint_files_are_messages(tiny, tmp_path, case, message):
    path = tmp_path / "epoch_3.pt"
    if case == "text":
        path.write_text("these are not weights\n")
    else:
        state = dict(tiny.model.state_dict())
        if case == "other model":
            state["text_projection"] = torch.zeros(3, 3)
        torch.save({"epoch": 3, "state_dict": state}, path)
        if case == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match=message) as e:
        load_model(ModelSettings(pretrained=str(path)))
    assert e.value.path == str(path)


def test_unknown_models_tags_and_offline_tags_are_messages(monkeypatch):
    with pytest.raises(UserError, match="unknown model 'ViT-Huge-99'"):
        load_model(ModelSettings("ViT-Huge-99"))
    with pytest.raises(UserError, match="'laion9b' is neither a file nor a pretrained tag of ViT-B-32 .*openai"):
        load_model(ModelSettings("ViT-B-32", "laion9b", device="cpu"))

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", offline)
    with pytest.raises(UserError, match="could not download the openai weights of ViT-B-32 .no network"):
        load_model(ModelSettings("ViT-B-32", "openai", device="cpu"))


# ------------------------------------------------------------------ ViT-bigG-14 without memory

def test_vit_bigg_on_the_meta_device():
    with torch.device("meta"):
        model = open_clip.create_model(BIG, device="meta")
    assert model.visual.output_dim == 1280 and model.text_projection.shape[1] == 1280
    assert 2.5e9 < parameter_count(BIG) < 2.6e9  # 1.84 B image tower + 0.69 B text tower
    assert next(model.parameters()).device.type == "meta"


def test_memory_estimate_of_the_seed_configuration():
    one = estimate_training_memory(BIG, 25, checkpointing=False)
    assert 55 < one.total < 70  # 38 GiB of weights, gradients and moments, 5 of autocast copies, ~15 of activations
    assert estimate_training_memory(BIG, 25, checkpointing=True).activations < 0.4 * one.activations
    assert estimate_training_memory(BIG, 25, False, nproc=8).total - one.total == pytest.approx(4 * one.parameters / 2**30)


def test_memory_estimate_is_within_10_percent_of_the_measured_h200_peaks():
    import json

    measured = json.loads((Path(__file__).resolve().parents[1] / "docs" / "gpu" / "gpu_check-h200-run1.json").read_text())
    for run in measured["train"]:
        estimate = estimate_training_memory(BIG, run["batch"], run["grad_checkpointing"]).total
        assert estimate == pytest.approx(run["peak_gib"], rel=0.1), run


# ------------------------------------------------------------------ the bigG training preset

def _args(p) -> list[str]:
    return p.command[p.command.index("traffic_retrieval.training.entry") + 1:]


def _value(args: list[str], option: str) -> str:
    return args[args.index(option) + 1]


def test_bigg_preset_on_eight_gpus_keeps_the_seed_schedule_in_samples(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    job = TrainJob(tmp_path / "train.csv", BIG, "laion2b_s39b_b160k", name="g", nproc=8)
    p = plan(job, default_settings(BIG, "laion2b_s39b_b160k"), dry_run=True)
    args = _args(p)
    assert p.command[1:4] == ["-m", "torch.distributed.run", "--nproc_per_node=8"] and args[0] == "--"
    assert _value(args, "--batch-size") == "25" and _value(args, "--warmup") == "1250"  # 10000 / 8
    assert _value(args, "--lr") == "4e-07" and _value(args, "--epochs") == "5" and _value(args, "--precision") == "amp_bf16"
    assert {"--local-loss", "--gather-with-grad", "--delete-previous-checkpoint", "--grad-checkpointing"} <= set(args)
    assert "--device" not in args and "gloo" not in args
    assert p.estimate.total < 80 and "gradient checkpointing on" in p.describe()


def test_bigg_preset_on_one_large_gpu_needs_no_checkpointing(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    job = TrainJob(tmp_path / "train.csv", BIG, "laion2b_s39b_b160k", name="g")
    args = _args(plan(job, default_settings(BIG, "x"), dry_run=True))  # planned for 80 GiB
    assert _value(args, "--warmup") == "10000" and "--grad-checkpointing" not in args and "--local-loss" not in args
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a visible 40 GiB GPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: type("P", (), {"total_memory": 40 * 2**30}))
    assert "--grad-checkpointing" in _args(plan(job, default_settings(BIG, "x")))


def test_tiny_preset_on_a_cpu(tmp_path):
    args = _args(plan(TrainJob(tmp_path / "t.csv"), default_settings("TR-ViT-Tiny")))
    assert _value(args, "--precision") == "fp32" and _value(args, "--device") == "cpu"
    assert "--delete-previous-checkpoint" in args and "--grad-checkpointing" not in args


@needs_no_cuda
def test_train_dry_run_prints_the_command_and_the_estimate(capsys):
    argv = ["train", "--model", BIG, "--pretrained", "laion2b_s39b_b160k", "--name", "g", "--dry-run", "--nproc", "8"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "torch.distributed.run --nproc_per_node=8 -m traffic_retrieval.training.entry --" in out
    assert "--warmup 1250" in out and "--grad-checkpointing" in out and "total" in out
    assert "planned for a CUDA GPU of 80 GiB" in out
    assert not Path("log/g").exists()


def test_gpu_check_without_cuda_says_so_and_exits_0():
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(["bash", str(root / "script" / "gpu_check.sh")], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": "", "HOME": str(Path.home())})
    assert done.returncode == 0, done.stderr
    assert "no CUDA device" in done.stdout + done.stderr and "nothing was measured" in done.stdout + done.stderr


@pytest.mark.slow
def test_gpu_check_runs_every_path_on_a_cpu_with_the_tiny_model(tmp_path):
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "check.json"
    done = subprocess.run(["bash", str(root / "script" / "gpu_check.sh"), "--allow-cpu", "--model", "TR-ViT-Tiny",
                           "--images", "24", "--train-steps", "6", "--batch", "4", "--augment-labels", "40",
                           "--workers", "0", "--encode-batch", "8", "--out", str(out),
                           "--encode-levers", "none", "compile,gpu-decode", "--train-levers", "none", "fused-adamw"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    r = json.loads(out.read_text())
    assert r["encode"]["images"] == 24 and r["encode"]["images_per_s"] > 0
    assert r["augment"]["completed"] > 0 and r["augment"]["labels_per_s"] > 0
    # the preset's choice, then the other, then each lever set with the preset's choice
    assert [(t["levers"], t["grad_checkpointing"]) for t in r["train"]] == [("none", False), ("none", True),
                                                                          ("fused-adamw", False)]
    assert [e["levers"] for e in r["encode_levers"]] == ["none", "compile"]  # gpu-decode needs CUDA: off, said why
    assert "lever gpu-decode off" in done.stderr
    assert all(t["exit"] == 0 and t["samples_per_s"] > 0 and t["export_gib"] > 0 for t in r["train"])
    assert "| (a) gallery encoding, batch 8, levers compile,gpu-decode" in done.stdout
