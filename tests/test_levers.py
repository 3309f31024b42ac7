"""GPU levers on the CPU: the switch and its fallbacks, the uint8 loader path against the PIL one, the
compiled towers against the eager ones, fused AdamW in the upstream loop, and that attention already
runs through scaled_dot_product_attention (so it needs no lever)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from traffic_retrieval.core.fileio import UserError
from traffic_retrieval.core.images import list_images
from traffic_retrieval.retrieval.decode import FileBytes, TensorTransform, decode_batch
from traffic_retrieval.retrieval.encode import EncodeSettings, encode_images
from traffic_retrieval.retrieval.levers import Levers, resolve, train_arguments
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.training import entry
from traffic_retrieval.training.train import TrainJob, TrainSettings, plan

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_the_switch_parses_names_and_refuses_unknown_ones():
    assert Levers.parse(None) == Levers.parse("none") == Levers()
    assert Levers.parse("all") == Levers(True, True, True, True)
    assert Levers.parse("compile, gpu-decode") == Levers(compile=True, gpu_decode=True)
    assert Levers.parse("compile,gpu-decode").describe() == "compile, gpu-decode"
    assert Levers.parse(Levers(compile=True, fused_adamw=True).describe()) == Levers(compile=True, fused_adamw=True)
    with pytest.raises(UserError, match="unknown graphs"):
        Levers.parse("compile,graphs")


def test_each_lever_that_cannot_run_is_turned_off_with_its_reason(monkeypatch):
    effective, notes = resolve(Levers.parse("all"), CPU)
    assert effective == Levers(compile=True)
    assert any("cuda-graphs off: CUDA graphs need a CUDA device" in n for n in notes)
    assert any("gpu-decode off: decoding on the GPU needs a CUDA device" in n for n in notes)
    assert any("fused-adamw off: training only" in n for n in notes)
    effective, notes = resolve(Levers.parse("all"), CPU, train=True)
    assert effective == Levers(compile=True, fused_adamw=True) and len(notes) == 2
    monkeypatch.setattr("shutil.which", lambda name: None)  # no C++ compiler: inductor cannot build CPU code
    effective, notes = resolve(Levers.parse("compile,cuda-graphs"), CPU)
    assert effective == Levers() and any("needs a C++ compiler" in n for n in notes)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # no triton
    effective, notes = resolve(Levers.parse("compile,cuda-graphs,gpu-decode"), CUDA)
    assert effective == Levers(gpu_decode=True)
    assert any("needs triton" in n for n in notes) and any("cuda-graphs off: a mode of compile" in n for n in notes)


def test_the_model_placement_carries_the_levers_and_logs_what_it_drops(caplog):
    with caplog.at_level(logging.WARNING):
        loaded = load_model(ModelSettings("TR-ResNet-Tiny", None, levers=Levers.parse("gpu-decode")))
    assert loaded.placement.levers == Levers()
    assert "lever gpu-decode off" in caplog.text and "GPU levers on: none" in caplog.text
    assert load_model(ModelSettings("TR-ResNet-Tiny", None)).placement.levers == Levers()  # default: all off


def _gallery(folder, sizes=((40, 24), (24, 40), (33, 33), (17, 51))):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"g{i}.jpg", quality=95)
    Image.fromarray(rng.integers(0, 255, (20, 30, 4), dtype=np.uint8), "RGBA").save(folder / "g9.png")
    rotated = Image.fromarray(rng.integers(0, 255, (20, 44, 3), dtype=np.uint8))
    exif = rotated.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    rotated.save(folder / "g7.jpg", quality=95, exif=exif)
    (folder / "g8.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return list_images(folder)


@pytest.mark.parametrize("square_pad", [True, False])
def test_the_uint8_path_gives_the_images_of_the_pil_path(tmp_path, square_pad):
    loaded = load_model(ModelSettings("TR-ResNet-Tiny", None, square_pad=square_pad))
    paths = _gallery(tmp_path / "g")
    transform = TensorTransform.of(loaded.preprocess, square_pad)
    assert transform.size == 64
    dataset = FileBytes(paths)
    for flip in (False, True):
        images, ok, sizes = decode_batch([dataset[i] for i in range(len(paths))], transform, CPU, flip, paths)
        bad = [p.name == "g8.jpg" for p in paths]
        assert ok.tolist() == [not b for b in bad]
        for i, path in enumerate(paths):
            if bad[i]:
                assert sizes[i].tolist() == [0, 0] and not images[i].any()
                continue
            if flip and path.name == "g7.jpg":
                continue  # the PIL path flips before it rotates by the EXIF tag; this one rotates, then flips
            with Image.open(path) as im:
                assert sizes[i].tolist() == list(im.size)  # the header's, as the PIL path reports it
                im.load()
                reference = loaded.preprocess(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else im)
            # bicubic resampling differs between PIL and torch by a few levels of 255 at most
            assert (images[i] - reference).abs().mean() < 0.03, path.name
            assert (images[i] - reference).abs().max() < 0.5, path.name


def test_an_unknown_transform_step_is_a_message():
    from torchvision.transforms import Compose, Normalize, RandomCrop

    with pytest.raises(UserError, match="no tensor counterpart"):
        TensorTransform.of(Compose([RandomCrop(8), Normalize((0.5,), (0.5,))]), True)


def test_the_uint8_path_encodes_a_gallery_as_the_pil_path_does(tmp_path):
    paths = _gallery(tmp_path / "g")
    pil = load_model(ModelSettings("TR-ResNet-Tiny", None))
    settings = EncodeSettings(workers=0, progress=False, batch_size=3)
    reference, ok = encode_images(pil, paths, settings)
    from dataclasses import replace

    uint8 = replace(pil, placement=replace(pil.placement, levers=Levers(gpu_decode=True)))  # as on CUDA
    emb, ok2 = encode_images(uint8, paths, settings)
    assert ok.tolist() == ok2.tolist() and not ok.all()
    cosine = (emb[ok] * reference[ok]).sum(1)
    assert cosine.min() > 0.99, cosine


@pytest.mark.slow
def test_the_compiled_towers_rank_as_the_eager_ones(tmp_path):
    paths = _gallery(tmp_path / "g", sizes=[(30 + i, 20 + 2 * i) for i in range(12)])
    settings = EncodeSettings(workers=0, progress=False, batch_size=8)
    texts = ["This is a red Audi SUV.", "A man in a blue coat.", "This is a white sedan."]
    from traffic_retrieval.retrieval.encode import encode_texts

    eager = load_model(ModelSettings("TR-ResNet-Tiny", None))
    torch.manual_seed(0)
    compiled = load_model(ModelSettings("TR-ResNet-Tiny", None, levers=Levers(compile=True)))
    compiled.model.load_state_dict(eager.model.state_dict())
    assert compiled.placement.levers.compile and "encode_image" in compiled.model.__dict__
    images_e, ok = encode_images(eager, paths, settings)
    images_c, _ = encode_images(compiled, paths, settings)
    texts_e, texts_c = encode_texts(eager, texts), encode_texts(compiled, texts)
    np.testing.assert_allclose(images_c, images_e, atol=1e-4)
    np.testing.assert_allclose(texts_c, texts_e, atol=1e-4)
    order_e = np.argsort(-(texts_e @ images_e[ok].T), axis=1)
    order_c = np.argsort(-(texts_c @ images_c[ok].T), axis=1)
    assert (order_e == order_c).all()
    assert set(compiled.model.state_dict()) == set(eager.model.state_dict())  # the weights' keys unchanged


def test_training_levers_become_the_entry_points_options(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("filepath\ttitle\n")
    job = TrainJob(csv, "TR-ResNet-Tiny", None, None, tmp_path / "log", "run", device="cpu")
    p = plan(job, TrainSettings(levers="all", precision="fp32"))
    assert "--fused-adamw" in p.command and "--torchcompile" in p.command
    assert any("gpu-decode off: inference only" in n for n in p.notes)
    assert any("cuda-graphs off: inference only" in n for n in p.notes)
    assert "--fused-adamw" not in plan(job, TrainSettings(precision="fp32")).command
    assert train_arguments(Levers()) == []


def test_fused_adamw_reaches_the_upstream_optimizer():
    argv, own = entry.own_options(["--fused-adamw", "--model", "RN50", "--degrade", "0.5"])
    assert own.fused_adamw and own.degrade == 0.5 and argv == ["--model", "RN50"]
    optim = entry.FusedOptim()
    model = torch.nn.Linear(4, 2)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    assert opt.defaults["fused"] is True and optim.SGD is torch.optim.SGD
    model(torch.randn(3, 4)).sum().backward()
    opt.step()  # fused AdamW runs on the CPU too (torch >= 2.4)


def test_attention_already_runs_through_sdpa(monkeypatch):
    """OpenCLIP 3.3.0's ViT blocks use nn.MultiheadAttention with need_weights=False, which calls
    F.scaled_dot_product_attention: the attention lever of the issue is on already, in training."""
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    loaded = load_model(ModelSettings("TR-ViT-Tiny", None))
    loaded.model.train()
    out = loaded.model.encode_image(torch.randn(2, 3, 64, 64))
    assert out.shape[0] == 2 and len(calls) >= len(loaded.model.visual.transformer.resblocks)
