"""GPU check: ViT-bigG-14 through the shipped code paths on one CUDA device, as fractions of its bf16 peak.

    bash script/gpu_check.sh [--images 2000] [--train-steps 30] [--peak-tflops 989] [--out gpu_check.json]

(a) gallery encoding: ``retrieval.encode.encode_images`` (infer's encoder: DataLoader workers, bf16
    autocast) over synthetic test images, images/s on the second (warm) pass;
(b) training: ``traffic-retrieval train`` with the bigG preset (bf16 AMP, batch 25, gradient
    checkpointing as the memory estimate decides, then the other way), samples/s from the upstream
    loop's log, peak memory as the entry point logs it, against the memory estimate;
(c) augmentation: ``training.augment.augment`` over a synthetic train split, labels/s.
(a) and (b) run once for each set of GPU levers given (``--encode-levers``, ``--train-levers``; the first
of each is "none", the shipped default), so that the table shows what each lever gives on this device;
the first training set runs also with gradient checkpointing the other way; a set past the time limit
is skipped and says so. Each against the analytic FLOPs of the model (forward 2 x multiply-adds of every matrix product and
attention; training 3 x forward) and the device's dense bf16 peak, looked up from its name (datasheet
figures) or given by --peak-tflops. Weights are randomly initialised: no weights can be downloaded on
such a machine, and speed and memory do not depend on them. Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PEAK_BF16_TFLOPS = {  # dense bf16 tensor-core peaks, vendor datasheets (SXM parts where there are two)
    "H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
    "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.0, "RTX 6000 Ada": 364.0,
}


def peak_tflops(device_name: str) -> float | None:
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)


def _layer_flops(tokens: int, width: int, mlp: float) -> float:
    """Forward FLOPs of one transformer layer: q, k, v, output and two MLP products, and attention."""
    hidden = width * mlp
    return 2 * tokens * (4 * width * width + 2 * width * hidden) + 4 * tokens * tokens * width


def forward_flops(model: str) -> tuple[float, float]:
    """(image, text) forward FLOPs of one sample of an OpenCLIP ViT, from its config."""
    import open_clip

    cfg = open_clip.get_model_config(model)
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    size = v["image_size"] if isinstance(v["image_size"], int) else v["image_size"][0]
    patches = (size // v["patch_size"]) ** 2
    image = 2 * patches * 3 * v["patch_size"] ** 2 * v["width"]  # patch embedding
    image += v["layers"] * _layer_flops(patches + 1, v["width"], v.get("mlp_ratio", 4.0))
    image += 2 * v["width"] * cfg["embed_dim"]
    ctx = t.get("context_length", 77)
    text = t["layers"] * _layer_flops(ctx, t["width"], t.get("mlp_ratio", 4.0)) + 2 * t["width"] * cfg["embed_dim"]
    return image, text


def matmul_tflops(device: str, n: int = 8192, repeats: int = 10) -> float:
    """A bf16 matrix product's measured rate: the ceiling this machine reaches in practice."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e12


@torch.inference_mode()
def model_ceiling(loaded, batch: int, steps: int = 10) -> dict:
    """Images/s of the image tower alone on random tensors already on the device: the shipped autocast
    over fp32 weights, and the same with the weights cast to bf16 once (what the data path cannot beat)."""
    import copy

    x = torch.randn(batch, 3, *loaded.model.visual.image_size, device=loaded.device)
    sync = torch.cuda.synchronize if loaded.device.type == "cuda" else (lambda: None)

    def rate(visual, x: torch.Tensor) -> float:
        with loaded.autocast():
            for _ in range(3):
                visual(x)
            sync()
            start = time.perf_counter()
            for _ in range(steps):
                visual(x)
            sync()
        return batch * steps / (time.perf_counter() - start)

    shipped = rate(loaded.model.visual, x)
    half = copy.deepcopy(loaded.model.visual).to(torch.bfloat16)
    bf16_weights = rate(half, x.to(torch.bfloat16))
    del half
    return {"batch": batch, "autocast_fp32_weights_images_per_s": shipped, "autocast_bf16_weights_images_per_s": bf16_weights}


def with_levers(loaded, levers: str):
    """The loaded model as ``load_model`` would give it with ``--levers levers`` (the weights shared: a
    bigG is built once), and the levers that apply."""
    import dataclasses

    from traffic_retrieval.retrieval.levers import Levers, apply_resolved, compile_towers

    for name in ("encode_image", "encode_text"):  # undo an earlier variant's compilation
        loaded.model.__dict__.pop(name, None)
    effective = apply_resolved(Levers.parse(levers), loaded.device)
    if effective.compile:
        compile_towers(loaded.model, effective)
    return dataclasses.replace(loaded, placement=dataclasses.replace(loaded.placement, levers=effective)), effective


def check_encoding(loaded, paths, batch: int, workers: int) -> dict:
    from traffic_retrieval.retrieval.encode import EncodeSettings, encode_images

    settings = EncodeSettings(batch_size=batch, workers=workers, progress=False)
    start = time.perf_counter()
    encode_images(loaded, paths, settings)  # cold: workers start, kernels are chosen (and compiled)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    _, ok = encode_images(loaded, paths, settings)
    seconds = time.perf_counter() - start
    return {"images": int(ok.sum()), "batch": batch, "workers": workers, "seconds": seconds, "cold_s": cold,
            "images_per_s": ok.sum() / seconds, "levers": loaded.placement.levers.describe()}


def check_augmentation(loaded, data: Path, batch: int, workers: int) -> dict:
    from traffic_retrieval.core.labels import read_labels
    from traffic_retrieval.core.layout import Layout, find_vocabulary
    from traffic_retrieval.retrieval.encode import EncodeSettings
    from traffic_retrieval.training.augment import augment, workload

    layout = Layout(data)
    labels = read_labels(layout.labels("train"))
    vocab = find_vocabulary(data)
    work = workload(labels, vocab)
    start = time.perf_counter()
    augment(loaded, layout.labels("train"), layout.images("train"), data / "augmented.txt", vocab,
            EncodeSettings(batch_size=batch, workers=workers))
    seconds = time.perf_counter() - start
    return {"labels": work.labels, "vehicle_labels": work.vehicles, "completed": work.to_complete,
            "distinct_prompts": work.distinct_prompts, "seconds": seconds, "labels_per_s": work.labels / seconds,
            "completed_per_s": work.to_complete / seconds}


def check_training(model: str, csv: Path, logs: Path, name: str, batch: int, workers: int,
                   checkpointing: bool | None, levers: str = "none") -> dict:
    """One epoch of ``traffic-retrieval train`` over ``csv``; samples/s and peak memory from its log."""
    flag = [] if checkpointing is None else ["--grad-checkpointing" if checkpointing else "--no-grad-checkpointing"]
    flag += ["--levers", levers]
    command = [sys.executable, "-m", "traffic_retrieval.apps.cli", "train", "--train-csv", str(csv), "--model", model,
               "--pretrained", "none", "--logs", str(logs), "--name", name, "--epochs", "1", "--batch-size", str(batch),
               "--warmup", "5", "--workers", str(workers), *flag, "--log-every-n-steps", "1"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log = (logs / name / "out.log").read_text() if (logs / name / "out.log").is_file() else done.stdout + done.stderr
    rates = [float(x) for x in re.findall(r"([\d.]+)/s/gpu", log)]
    peak = re.search(r"peak GPU memory: ([\d.]+) GiB allocated, ([\d.]+) GiB reserved", log)
    checkpoint = next((logs / name / "checkpoints").glob("epoch_*.pt"), None) if (logs / name).is_dir() else None
    export = next((logs / name / "weights").glob("epoch_*.safetensors"), None) if (logs / name).is_dir() else None
    return {
        "exit": done.returncode, "batch": batch, "levers": levers,
        "grad_checkpointing": bool(re.search(r"grad_checkpointing: True", log)) or checkpointing is True,
        "steps_logged": len(rates), "samples_per_s": statistics.median(rates[3:]) if len(rates) > 4 else None,
        "peak_gib": float(peak.group(1)) if peak else None, "reserved_gib": float(peak.group(2)) if peak else None,
        "wall_s": seconds,
        "checkpoint_gib": checkpoint.stat().st_size / 2**30 if checkpoint else None,
        "export_gib": export.stat().st_size / 2**30 if export else None,
        "error": None if done.returncode == 0 else (done.stderr or done.stdout)[-1500:],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ViT-bigG-14")
    p.add_argument("--images", type=int, default=2000, help="synthetic gallery images to encode")
    p.add_argument("--encode-batch", type=int, default=256)
    p.add_argument("--train-steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=25, help="training batch (A3R: 25)")
    p.add_argument("--augment-labels", type=int, default=3000, help="synthetic train labels to augment")
    p.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak (default: by name)")
    p.add_argument("--time-limit", type=float, default=450, help="seconds; the second training run is skipped past it")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "log")) / "gpu_check.json")
    p.add_argument("--allow-cpu", action="store_true", help="run on the CPU (to test this script with a tiny model)")
    p.add_argument("--skip-train", action="store_true", help="measure encoding and augmentation only")
    p.add_argument("--ceiling", action="store_true", help="also time the image tower alone on random tensors")
    p.add_argument("--encode-levers", nargs="+", default=["none", "gpu-decode", "compile", "compile,gpu-decode",
                                                          "compile,cuda-graphs,gpu-decode"],
                   help="lever sets to time the encoding with, each as --levers takes it (retrieval/levers.py)")
    p.add_argument("--train-levers", nargs="+", default=["none", "fused-adamw", "compile,fused-adamw"],
                   help="lever sets to time training with (the first also with checkpointing the other way)")
    args = p.parse_args(argv)

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing was measured. "
              "Run it on a machine with an NVIDIA GPU and a CUDA build of torch.")
        return 0
    import open_clip

    from traffic_retrieval.core.images import list_images
    from traffic_retrieval.retrieval.device import free_gpu_memory
    from traffic_retrieval.retrieval.models import ModelSettings, load_model, register_configs
    from traffic_retrieval.synthetic.generate import generate
    from traffic_retrieval.training.memory import estimate_training_memory
    from traffic_retrieval.training.prepare import prepare

    began = time.perf_counter()
    register_configs()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    peak = args.peak_tflops or peak_tflops(name)
    image_flops, text_flops = forward_flops(args.model)
    result: dict = {"device": name, "model": args.model, "torch": torch.__version__, "open_clip": open_clip.__version__,
                    "peak_bf16_tflops": peak, "forward_tflop_image": image_flops / 1e12,
                    "forward_tflop_text": text_flops / 1e12}
    if device == "cuda":
        result["gpu_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
        result["matmul_bf16_tflops"] = matmul_tflops(device)
    print(f"device: {name}; {args.model}: {image_flops / 1e12:.3f} TFLOP an image, {text_flops / 1e12:.3f} a text; "
          f"bf16 peak {peak} TFLOP/s (datasheet), matmul measured {result.get('matmul_bf16_tflops', 0):.0f}", flush=True)

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")

    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    try:
        train_images = max(args.augment_labels, args.batch * args.train_steps)
        generate(work / "data", train=train_images, val=0, test=args.images, seed=0, workers=args.workers, progress=False)
        prepared = prepare(work / "data", progress=False)
        csv = work / "train.csv"
        lines = (prepared / "train.csv").read_text().splitlines(keepends=True)
        csv.write_text("".join(lines[: 1 + args.batch * args.train_steps]))
        result["setup_s"] = time.perf_counter() - began

        start = time.perf_counter()
        loaded = load_model(ModelSettings(args.model, None, device=device))
        result["load_s"] = time.perf_counter() - start
        result["encode_levers"] = []
        for levers in args.encode_levers:
            variant, effective = with_levers(loaded, levers)
            enc = check_encoding(variant, list_images(work / "data" / "test" / "test_images"), args.encode_batch,
                                 args.workers)
            enc["asked"] = levers
            enc["fraction_of_peak"] = enc["images_per_s"] * image_flops / 1e12 / peak if peak else None
            result["encode_levers"].append(enc)
            print(f"(a) encoding, levers {levers} ({effective.describe()} applied): {enc['images_per_s']:.0f} images/s"
                  + (f" = {enc['fraction_of_peak']:.0%} of the bf16 peak" if peak else "")
                  + f", first pass {enc['cold_s']:.1f} s", flush=True)
            save()
        loaded, _ = with_levers(loaded, "none")
        result["encode"] = result["encode_levers"][0]
        if args.ceiling:
            ceiling = model_ceiling(loaded, args.encode_batch)
            for key in ("autocast_fp32_weights_images_per_s", "autocast_bf16_weights_images_per_s"):
                ceiling[key.replace("images_per_s", "fraction_of_peak")] = (ceiling[key] * image_flops / 1e12 / peak
                                                                             if peak else None)
            result["ceiling"] = ceiling
            print(f"    the image tower alone: {ceiling['autocast_fp32_weights_images_per_s']:.0f} images/s "
                  f"(fp32 weights, autocast), {ceiling['autocast_bf16_weights_images_per_s']:.0f} (bf16 weights)",
                  flush=True)
        save()
        print(f"(a) encoding: {enc['images_per_s']:.0f} images/s (batch {enc['batch']}, {enc['workers']} workers, "
              f"{loaded.precision} autocast)" + (f" = {enc['fraction_of_peak']:.0%} of the bf16 peak" if peak else ""),
              flush=True)
        aug = check_augmentation(loaded, work / "data", args.encode_batch, args.workers)
        aug["images_fraction_of_peak"] = aug["completed_per_s"] * image_flops / 1e12 / peak if peak else None
        result["augment"] = aug
        save()
        print(f"(c) augmentation: {aug['labels']} labels ({aug['completed']} completed, {aug['distinct_prompts']} "
              f"distinct prompts) in {aug['seconds']:.1f} s = {aug['labels_per_s']:.0f} labels/s", flush=True)
        del loaded
        free_gpu_memory()

        result["train"] = []
        first = None
        runs = [(args.train_levers[0], None), (args.train_levers[0], "other")] + [(lv, None) for lv in args.train_levers[1:]]
        for levers, checkpointing in () if args.skip_train else runs:
            if first is not None and time.perf_counter() - began > args.time_limit - 180:
                print(f"(b) training with levers {levers} is skipped: too little time left", flush=True)
                continue
            if checkpointing == "other":
                checkpointing = not first["grad_checkpointing"]
            elif first is not None:
                checkpointing = first["grad_checkpointing"]  # the preset's choice, for every lever
            run = check_training(args.model, csv, work / "log", f"check-{len(result['train'])}", args.batch,
                                 min(8, args.workers), checkpointing, levers)
            shutil.rmtree(work / "log", ignore_errors=True)  # a bigG checkpoint is ~30 GB
            estimate = estimate_training_memory(args.model, args.batch, run["grad_checkpointing"])
            run["estimate_gib"] = estimate.total
            train_flops = 3 * (image_flops + text_flops)
            if run["samples_per_s"] and peak:
                run["mfu"] = run["samples_per_s"] * train_flops / 1e12 / peak
            result["train"].append(run)
            save()
            first = first or run
            mfu = f" = {run['mfu']:.0%} MFU" if run.get("mfu") is not None else ""
            print(f"(b) training, batch {args.batch}, levers {levers}, gradient checkpointing "
                  f"{'on' if run['grad_checkpointing'] else 'off'}: "
                  f"{run['samples_per_s'] or 0:.1f} samples/s{mfu}, peak {run['peak_gib']} GiB "
                  f"(estimate {estimate.total:.1f}), checkpoint {run['checkpoint_gib'] or 0:.1f} GiB, "
                  f"export {run['export_gib'] or 0:.2f} GiB, {run['wall_s']:.0f} s in all"
                  + (f"\n    failed: {run['error']}" if run["error"] else ""), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        result["total_s"] = time.perf_counter() - began
        save()
    print(table(result))
    print(f"-> {args.out}")
    return 0


def table(r: dict) -> str:
    """The results as a markdown table."""
    rows = ["| check | rate | fraction of the bf16 peak | memory |", "|---|---|---|---|"]
    for e in r.get("encode_levers", [r["encode"]] if "encode" in r else []):
        rows.append(f"| (a) gallery encoding, batch {e['batch']}, levers {e.get('asked', 'none')} | "
                    f"{e['images_per_s']:.0f} images/s | {e['fraction_of_peak'] or 0:.0%} | |")
    for t in r.get("train", []):
        rows.append(f"| (b) training, batch {t['batch']}, levers {t.get('levers', 'none')}, checkpointing "
                    f"{'on' if t['grad_checkpointing'] else 'off'} | "
                    f"{t['samples_per_s'] or 0:.1f} samples/s | {t.get('mfu') or 0:.0%} MFU | "
                    f"peak {t['peak_gib']} GiB (estimate {t['estimate_gib']:.1f}) |")
    if "augment" in r:
        a = r["augment"]
        rows.append(f"| (c) augmentation | {a['labels_per_s']:.0f} labels/s ({a['completed_per_s']:.0f} completed/s) | "
                    f"{a['images_fraction_of_peak'] or 0:.0%} (images alone) | |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
