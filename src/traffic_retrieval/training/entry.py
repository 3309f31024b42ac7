"""Process entry point for ``open_clip_train``: the upstream loop, with the project's model
configs registered and its input transform (RGB + square padding) around OpenCLIP's. Small patches,
no copied code:

- an unreadable training image is logged and replaced by the next sample;
- ``--degrade P`` degrades a share P of the training crops as a surveillance camera would
  (training/degrade.py), before square padding;
- ``--attribute-loss W`` adds W times the attribute heads' cross-entropy on both towers to the
  upstream loss (training/attribute_loss.py), with the targets of the CSV's ``attribute`` column;
- checkpoints are written to a temporary file and renamed, so that ``--resume latest`` never picks a
  half-written ``epoch_N.pt``, and each epoch's weights are exported alone beside them
  (``weights/epoch_N.safetensors``, retrieval/weights.py), which is what inference reads;
- the model is built directly on its device (ViT-bigG-14: no 10 GB detour through host memory), a
  resumed checkpoint is memory-mapped rather than read into each rank's memory, and the peak GPU
  memory is logged at the end;
- ``--fused-adamw`` (a GPU lever, retrieval/levers.py) has the upstream AdamW built with ``fused=True``;
- the console stays readable: the model description and parameter list (~150 lines a run) go to
  ``out.log`` and ``params.txt`` only, each line is printed once (by the upstream handler alone), and
  no memory is pinned without CUDA (torch warned about it at every run on a CPU).

Run as ``python -m traffic_retrieval.training.entry [--no-square-pad] [--degrade P] [--attribute-loss W]
[--fused-adamw] <open_clip_train args>``,
directly or under ``torchrun``; ``traffic_retrieval.training.train`` builds that command line.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import open_clip
import open_clip_train.data as upstream_data
import open_clip_train.main as upstream
import pandas as pd
import torch
from open_clip_train.file_utils import pt_load as upstream_pt_load

from ..core.fileio import atomic_open
from ..retrieval.device import inference_precision
from ..retrieval.models import register_configs, with_square_pad
from ..retrieval.weights import EXPORT_DIR, export_weights
from . import attribute_loss
from .degrade import Degradation, Degrade

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pt$")

MAX_BAD_IN_A_ROW = 100  # beyond this the cause is not a bad file: let the error through


def skipping_unreadable(getitem: Callable) -> Callable:
    """Wrap ``CsvDataset.__getitem__``: when a sample fails to load, log its image path and return
    the next one instead (prepare leaves out the images it cannot open; this covers the rest)."""

    def __getitem__(self, idx: int):
        for step in range(MAX_BAD_IN_A_ROW):
            i = (idx + step) % len(self)
            try:
                return getitem(self, i)
            except Exception as e:
                if step == MAX_BAD_IN_A_ROW - 1:
                    raise
                logging.warning("unreadable training image %s (%s): using the next sample instead", self.images[i], e)

    return __getitem__


def saving_atomically(save: Callable, export: Optional[Callable[[dict, Path, int], None]] = None) -> Callable:
    """Wrap ``torch.save``: a path is written through a temporary file and a rename; after an epoch's
    checkpoint (``checkpoints/epoch_N.pt``), ``export(state_dict, run folder, N)`` runs."""

    def save_atomically(obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)):
            return save(obj, f, *args, **kwargs)
        with atomic_open(f, "wb") as out:
            result = save(obj, out, *args, **kwargs)
        epoch = _EPOCH_FILE.match(Path(f).name)
        if export is not None and epoch and isinstance(obj, dict) and "state_dict" in obj:
            export(obj["state_dict"], Path(f).parent.parent, int(epoch.group(1)))
        return result

    return save_atomically


def _option(argv: list[str], name: str) -> Optional[str]:
    return argv[argv.index(name) + 1] if name in argv and argv.index(name) + 1 < len(argv) else None


def mmap_load(path, map_location=None):
    """``pt_load`` for ``--resume``: a local checkpoint is memory-mapped, so ranks share the page cache
    instead of each reading 30 GB (ViT-bigG-14 with its optimizer state) into its own memory."""
    if isinstance(path, (str, os.PathLike)) and os.path.isfile(path):
        return torch.load(path, map_location=map_location, mmap=True)
    return upstream_pt_load(path, map_location=map_location)


class NoModelDescription(logging.Filter):
    """Drops, on the console only, the upstream loop's model description ("Model:" and the module
    tree) and parameter list ("Params:" and "  name: value" lines); ``out.log`` and ``params.txt``
    keep them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.pathname != upstream.__file__:
            return True
        message = record.getMessage()
        return not (message in ("Model:", "Params:") or message.startswith("  ") or "\n" in message)


class UnpinnedWithoutCuda(torch.utils.data.DataLoader):
    """The upstream loop asks every DataLoader to pin memory; without CUDA there is nothing to pin
    it for, and torch says so in a warning at each run."""

    def __init__(self, *args, pin_memory: bool = False, **kwargs):
        super().__init__(*args, pin_memory=pin_memory and torch.cuda.is_available(), **kwargs)


class CpuDDP(torch.nn.parallel.DistributedDataParallel):
    """DDP that drops ``device_ids=[cpu]``: the upstream loop passes its device always, and torch
    refuses device ids for a CPU module (torchrun with gloo on CPU)."""

    def __init__(self, module, device_ids=None, **kwargs):
        if device_ids and all(torch.device(d).type == "cpu" for d in device_ids):
            device_ids = None
        super().__init__(module, device_ids=device_ids, **kwargs)


@dataclass(frozen=True)
class OwnOptions:
    """The package's own options of the entry point, which the upstream parser would refuse."""

    square_pad: bool = True
    degrade: float = 0.0
    attribute_loss: float = 0.0
    fused_adamw: bool = False


def own_options(argv: list[str]) -> tuple[list[str], OwnOptions]:
    """The upstream arguments without the package's own (``--no-square-pad``, ``--degrade P``,
    ``--attribute-loss W``, ``--fused-adamw``), and those."""
    values = {}
    for name in ("--degrade", "--attribute-loss"):
        values[name] = float(_option(argv, name) or 0.0)
        if name in argv:
            i = argv.index(name)
            argv = argv[:i] + argv[i + 2:]
    flags = ("--no-square-pad", "--fused-adamw")
    return ([a for a in argv if a not in flags],
            OwnOptions("--no-square-pad" not in argv, values["--degrade"], values["--attribute-loss"],
                       "--fused-adamw" in argv))


class FusedOptim:
    """``torch.optim`` as the upstream loop sees it with ``--fused-adamw``: its AdamW built with
    ``fused=True`` (one kernel for the whole update), the rest unchanged."""

    AdamW = staticmethod(functools.partial(torch.optim.AdamW, fused=True))

    def __getattr__(self, name: str):
        return getattr(torch.optim, name)


def attribute_supervision(argv: list[str], model_name: str) -> Optional[Callable]:
    """What puts the attribute heads on a created model (training/attribute_loss.py), built from the
    training CSV before the upstream loop starts."""
    csv_path = _option(argv, "--train-data")
    csv = pd.read_csv(csv_path, sep=_option(argv, "--csv-separator") or "\t")
    if attribute_loss.CSV_COLUMN not in csv.columns:
        raise SystemExit(f"--attribute-loss: {csv_path} has no {attribute_loss.CSV_COLUMN!r} column; "
                         "write it again with traffic-retrieval prepare")
    csv = csv.rename(columns={_option(argv, "--csv-caption-key") or "title": "title"})
    groups, table = attribute_loss.caption_targets(csv, open_clip.get_tokenizer(model_name))
    dim = open_clip.get_model_config(model_name)["embed_dim"]
    return lambda model: attribute_loss.attach(model, groups, table, dim)


def main(argv: list[str]) -> int:
    argv, own = own_options(argv)
    register_configs()
    model_name = _option(argv, "--model") or "RN50"
    create = upstream.create_model_and_transforms
    degradation = Degrade(Degradation(probability=own.degrade)) if own.degrade > 0 else None
    supervise = attribute_supervision(argv, model_name) if own.attribute_loss > 0 else None

    def create_with_padding(*args, **kwargs):
        with torch.device(kwargs.get("device") or "cpu"):  # built where it trains
            model, preprocess_train, preprocess_val = create(*args, **kwargs)
            if supervise is not None:
                supervise(model)
        return (model, with_square_pad(preprocess_train, own.square_pad, degradation),
                with_square_pad(preprocess_val, own.square_pad))

    upstream.create_model_and_transforms = create_with_padding
    setup_logging = upstream.setup_logging

    def setup_logging_quietly(*args, **kwargs):
        # A logging call before this point (open_clip's tokenizer lookup for the attribute heads)
        # gave the root logger Python's default stderr handler, and the upstream setup adds its own
        # beside it: every line was printed twice ("INFO:root:..." and "... | INFO | ..."). Only the
        # upstream handlers stay.
        for handler in list(logging.root.handlers):
            logging.root.removeHandler(handler)
        # The upstream setup raises every logger to INFO, torch's own included, which then
        # floods the console with compiler statistics at exit.
        setup_logging(*args, **kwargs)
        for name in list(logging.root.manager.loggerDict):
            if name.split(".")[0] in ("torch", "PIL", "matplotlib"):
                logging.getLogger(name).setLevel(logging.WARNING)
        for handler in logging.root.handlers:
            if type(handler) is logging.StreamHandler:  # the console, not out.log (a FileHandler)
                handler.addFilter(NoModelDescription())

    upstream.setup_logging = setup_logging_quietly
    upstream_data.CsvDataset.__getitem__ = skipping_unreadable(upstream_data.CsvDataset.__getitem__)
    if supervise is not None:
        create_loss = upstream.create_loss
        upstream.create_loss = lambda args: attribute_loss.WithAttributeLoss(create_loss(args), own.attribute_loss)
    on_cuda = torch.cuda.is_available() and (_option(argv, "--device") or "cuda").startswith("cuda")
    dtype = DTYPES[inference_precision(torch.device("cuda" if on_cuda else "cpu"))]

    def export(state_dict: dict, run: Path, epoch: int) -> None:
        state_dict = {k: v for k, v in state_dict.items()
                      if not k.removeprefix("module.").startswith(attribute_loss.HEAD_PREFIX)}  # training-only
        path = export_weights(state_dict, run / EXPORT_DIR / f"epoch_{epoch}.safetensors", model_name, epoch, dtype)
        logging.info(f"exported the weights of epoch {epoch} ({str(dtype).removeprefix('torch.')}) to {path}")

    torch.save = saving_atomically(torch.save, export)
    upstream_data.DataLoader = UnpinnedWithoutCuda
    torch.nn.parallel.DistributedDataParallel = CpuDDP
    upstream.pt_load = mmap_load
    if own.fused_adamw:
        upstream.optim = FusedOptim()
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    # The upstream loop returns -1 (and the process exits 0) when it refuses to run.
    code = 1 if upstream.main(argv) == -1 else 0
    if on_cuda and torch.cuda.max_memory_allocated():
        logging.info(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB allocated, "
                     f"{torch.cuda.max_memory_reserved() / 2**30:.1f} GiB reserved")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
