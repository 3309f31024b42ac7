"""Process entry point for ``open_clip_train``: the upstream loop, with the project's model
configs registered and its input transform (RGB + square padding) around OpenCLIP's.

Run as ``python -m traffic_retrieval.train_entry [--no-square-pad] <open_clip_train args>``,
directly or under ``torchrun``; ``traffic_retrieval.train`` builds that command line.
"""

from __future__ import annotations

import logging
import sys

import open_clip_train.main as upstream

from .models import register_configs, with_square_pad


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
    # The upstream loop returns -1 (and the process exits 0) when it refuses to run.
    return 1 if upstream.main(argv) == -1 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
