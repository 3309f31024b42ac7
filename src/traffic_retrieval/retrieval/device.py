"""One device and precision policy for every command.

CUDA when present; on CUDA, inference runs under bf16 autocast (fp16 where the GPU has no bf16)
with TF32 matrix products, and on the CPU in fp32. A model too large for a CPU (anything but the
package's own tiny configs) never falls back to the CPU silently: without CUDA it is an error
that says why CUDA is missing, unless the user asks for ``--device cpu``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
from dataclasses import dataclass
from typing import ContextManager, Optional

import torch

from ..core.fileio import UserError
from .configs import is_package_config
from .levers import Levers, apply_resolved


class DeviceError(UserError, RuntimeError):
    """No device fits the request; the message says why and what to do."""


def driver_cuda_version() -> int:
    """The CUDA version the installed NVIDIA driver supports (12040 for 12.4), 0 without a driver;
    asked of libcuda directly, which works where torch's CUDA cannot start."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    version = ctypes.c_int()
    return version.value if lib.cuDriverGetVersion(ctypes.byref(version)) == 0 else 0


def cuda_missing_reason() -> str:
    """Why ``torch.cuda.is_available()`` is False, in words a user can act on."""
    if torch.version.cuda is None:
        return "this torch build has no CUDA support (a CPU-only wheel)"
    driver = driver_cuda_version()
    needed = torch.version.cuda
    if not driver:
        return f"no NVIDIA GPU or driver was found (torch is built for CUDA {needed})"
    major, minor = int(needed.split(".")[0]), int(needed.split(".")[1])
    supported = f"{driver // 1000}.{driver % 1000 // 10}"
    if driver < major * 1000 + minor * 10:
        return (f"the NVIDIA driver supports CUDA {supported}, older than the CUDA {needed} this torch build "
                f"needs: update the driver, or install a torch build for CUDA {supported} (see the README)")
    return f"CUDA {needed} with a driver for CUDA {supported}, yet no device is visible (check CUDA_VISIBLE_DEVICES)"


def choose_device(model: str, requested: Optional[str] = None) -> torch.device:
    """The device a model runs on: the requested one (checked), else CUDA when present, else the CPU
    for the package's tiny models; a large model without CUDA is a DeviceError."""
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError(f"--device {requested}: {cuda_missing_reason()}")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if is_package_config(model):
        return torch.device("cpu")
    raise DeviceError(f"{model} needs a GPU and none is usable: {cuda_missing_reason()}. "
                      "Pass --device cpu to run it on the CPU anyway (hours to days for ViT-bigG-14).")


def inference_precision(device: torch.device) -> str:
    """"bf16" or "fp16" autocast on CUDA (bf16 where supported), "fp32" on the CPU."""
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def training_precision(device_type: str) -> str:
    """open_clip_train's ``--precision``: bf16 AMP unless the visible GPU lacks bf16 (then fp16 AMP),
    fp32 on the CPU (AMP on a CPU is about 14x slower)."""
    if device_type != "cuda":
        return "fp32"
    return "amp" if torch.cuda.is_available() and not torch.cuda.is_bf16_supported() else "amp_bf16"


def autocast(device: torch.device, precision: str) -> ContextManager:
    """The autocast context of a precision ("fp32": none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def enable_tf32() -> None:
    """TF32 tensor cores for what still runs in fp32 on CUDA (the seed ran plain fp32)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


@dataclass(frozen=True)
class Placement:
    """Where and how a model runs."""

    device: torch.device
    precision: str  # "fp32", "bf16" or "fp16" (autocast)
    levers: Levers = Levers()  # those that run on ``device`` (retrieval/levers.py)

    def autocast(self) -> ContextManager:
        return autocast(self.device, self.precision)


def place(model: str, requested: Optional[str] = None, levers: Levers = Levers()) -> Placement:
    """The policy for one model: its device, its inference precision and the levers asked for that run there."""
    device = choose_device(model, requested)
    if device.type == "cuda":
        enable_tf32()
    return Placement(device, inference_precision(device), apply_resolved(levers, device))


def free_gpu_memory() -> None:
    """Return this process's cached GPU memory (models no longer referenced) to the device, e.g. before
    a training run starts in a child process."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
