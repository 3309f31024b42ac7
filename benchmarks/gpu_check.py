"""GPU check: ViT-bigG-14 training steps (AMP, with and without gradient checkpointing) and bf16
gallery encoding on one CUDA device; prints peak memory, samples/s and images/s.

Inputs are random tensors already on the device, so the figures are the model's, not the data
loader's. Weights are randomly initialised unless --pretrained names a tag or checkpoint (speed
and memory do not depend on the weights). Exits 2, running nothing, where no CUDA device is.

    bash script/gpu_check.sh [--steps 5] [--batch 25] [--encode-batch 256]
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from typing import Callable

import torch

BIG_MODEL = "ViT-bigG-14"
# FLOP bound of ViT-bigG-14 image encoding at 224 px on an H200: 0.97 TFLOP per image at 790 TFLOP/s bf16.
ANCHOR_IMAGES_PER_S = 815.0
AMP = {"amp": torch.float16, "amp_bf16": torch.bfloat16}


def timed(step: Callable[[], None], warmup: int, steps: int) -> float:
    """Seconds per step after ``warmup`` untimed steps, the device synchronised around the clock."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def train_check(model, loss_fn, batch: int, steps: int, warmup: int, precision: str, checkpointing: bool) -> dict:
    """Contrastive training steps (AdamW, the upstream loop's AMP and loss) on random image-text pairs."""
    import open_clip

    model.train()
    model.set_grad_checkpointing(checkpointing)
    images = torch.randn(batch, 3, *model.visual.image_size, device="cuda")
    texts = torch.randint(0, open_clip.get_tokenizer(BIG_MODEL).vocab_size, (batch, 77), device="cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-7, weight_decay=0.01)
    scaler = torch.amp.GradScaler("cuda") if precision == "amp" else None
    autocast = torch.autocast("cuda", dtype=AMP[precision]) if precision in AMP else nullcontext()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            out = model(images, texts)
            loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    seconds = timed(step, warmup, steps)
    peak = torch.cuda.max_memory_allocated()
    del optimizer, scaler
    model.zero_grad(set_to_none=True)
    torch.cuda.empty_cache()
    return {"samples_per_s": batch / seconds, "peak_gib": peak / 2**30, "step_s": seconds}


@torch.inference_mode()
def encode_check(visual, batch: int, steps: int, warmup: int) -> dict:
    """Image encoding in bf16 (weights and activations), the gallery path on a GPU."""
    images = torch.randn(batch, 3, *visual.image_size, device="cuda", dtype=torch.bfloat16)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    seconds = timed(lambda: visual(images), warmup, steps)
    return {"images_per_s": batch / seconds, "peak_gib": torch.cuda.max_memory_allocated() / 2**30}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=BIG_MODEL)
    p.add_argument("--pretrained", default=None, help="OpenCLIP tag or checkpoint (default: random initialisation)")
    p.add_argument("--batch", type=int, default=25, help="training batch (A3R: 25)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per configuration")
    p.add_argument("--encode-batch", type=int, default=256)
    p.add_argument("--encode-steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--precision", choices=("amp", "amp_bf16", "fp32"), default="amp",
                   help="training precision, as open_clip_train's --precision (A3R: amp)")
    args = p.parse_args(argv)

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device found (torch.cuda.is_available() is False); nothing was run. "
              "Run it on a machine with an NVIDIA GPU and a CUDA build of torch.", file=sys.stderr)
        return 2

    import open_clip
    from open_clip.loss import ClipLoss

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    print(f"device: {torch.cuda.get_device_name()}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB; "
          f"torch {torch.__version__}, open_clip {open_clip.__version__}")
    start = time.perf_counter()
    model = open_clip.create_model(args.model, pretrained=args.pretrained, device="cuda", output_dict=True)
    params = sum(x.numel() for x in model.parameters())
    print(f"{args.model} ({args.pretrained or 'random init'}): {params / 1e9:.2f} B parameters, "
          f"built in {time.perf_counter() - start:.1f} s")

    loss_fn = ClipLoss()
    for checkpointing in (False, True):
        label = f"train {args.precision}, batch {args.batch}, grad checkpointing {'on' if checkpointing else 'off'}"
        try:
            r = train_check(model, loss_fn, args.batch, args.steps, args.warmup, args.precision, checkpointing)
            print(f"{label}: {r['samples_per_s']:.1f} samples/s ({r['step_s']:.3f} s/step), "
                  f"peak {r['peak_gib']:.1f} GiB")
        except torch.cuda.OutOfMemoryError:
            print(f"{label}: out of memory ({torch.cuda.max_memory_allocated() / 2**30:.1f} GiB allocated at the peak)")
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()

    visual = model.visual.to(torch.bfloat16).eval()
    del model
    torch.cuda.empty_cache()
    r = encode_check(visual, args.encode_batch, args.encode_steps, args.warmup)
    print(f"encode bf16, batch {args.encode_batch}: {r['images_per_s']:.1f} images/s, peak {r['peak_gib']:.1f} GiB; "
          f"{r['images_per_s'] / ANCHOR_IMAGES_PER_S:.2f} of the {ANCHOR_IMAGES_PER_S:.0f} images/s FLOP bound "
          f"(ViT-bigG-14, 224 px, H200)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
