"""Process entry point for ``open_clip_train``: the upstream loop, with the project's model
configs registered and its input transform (RGB + square padding) around OpenCLIP's. Two small
patches make a long run survive bad data and a kill: an unreadable training image is logged and
replaced by the next sample, and checkpoints are written to a temporary file and renamed, so that
``--resume latest`` never picks a half-written ``epoch_N.pt``.

Run as ``python -m traffic_retrieval.training.entry [--no-square-pad] <open_clip_train args>``,
directly or under ``torchrun``; ``traffic_retrieval.training.train`` builds that command line.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable

import open_clip_train.data as upstream_data
import open_clip_train.main as upstream
import torch

from ..core.fileio import atomic_open
from ..retrieval.models import register_configs, with_square_pad

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


def saving_atomically(save: Callable) -> Callable:
    """Wrap ``torch.save``: a path is written through a temporary file and a rename."""

    def save_atomically(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            with atomic_open(f, "wb") as out:
                return save(obj, out, *args, **kwargs)
        return save(obj, f, *args, **kwargs)

    return save_atomically


class CpuDDP(torch.nn.parallel.DistributedDataParallel):
    """DDP that drops ``device_ids=[cpu]``: the upstream loop passes its device always, and torch
    refuses device ids for a CPU module (torchrun with gloo on CPU)."""

    def __init__(self, module, device_ids=None, **kwargs):
        if device_ids and all(torch.device(d).type == "cpu" for d in device_ids):
            device_ids = None
        super().__init__(module, device_ids=device_ids, **kwargs)


def main(argv: list[str]) -> int:
    square_pad = "--no-square-pad" not in argv
    argv = [a for a in argv if a != "--no-square-pad"]
    register_configs()
    create = upstream.create_model_and_transforms

    def create_with_padding(*args, **kwargs):
        model, preprocess_train, preprocess_val = create(*args, **kwargs)
        return model, with_square_pad(preprocess_train, square_pad), with_square_pad(preprocess_val, square_pad)

    upstream.create_model_and_transforms = create_with_padding
    setup_logging = upstream.setup_logging

    def setup_logging_quietly(*args, **kwargs):
        # The upstream setup raises every logger to INFO, torch's own included, which then
        # floods the console with compiler statistics at exit.
        setup_logging(*args, **kwargs)
        for name in list(logging.root.manager.loggerDict):
            if name.split(".")[0] in ("torch", "PIL", "matplotlib"):
                logging.getLogger(name).setLevel(logging.WARNING)

    upstream.setup_logging = setup_logging_quietly
    upstream_data.CsvDataset.__getitem__ = skipping_unreadable(upstream_data.CsvDataset.__getitem__)
    torch.save = saving_atomically(torch.save)
    torch.nn.parallel.DistributedDataParallel = CpuDDP
    # The upstream loop returns -1 (and the process exits 0) when it refuses to run.
    return 1 if upstream.main(argv) == -1 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
