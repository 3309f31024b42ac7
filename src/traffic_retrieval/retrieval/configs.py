"""Model names: the package's own configs and the seed's backbone. No torch here, so that a
command's parser can name its defaults without loading a model library."""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).with_name("model_configs")
TINY_VIT = "TR-ViT-Tiny"  # 64 px ViT, trains from scratch on 2 CPUs in minutes
# The same text tower with timm's resnet10t as the image tower, 64 px, and a 256-d embedding (chosen on
# seed 1 against the ViT's 128, docs/domain-shift.md): the default of the reproduce notebook.
CONV_MODEL = "TR-ResNet-Tiny"
CONV_MODEL_128 = "TR-ResNet-Tiny-128"  # the same with a 128-d embedding, for the ablation and the selection runs
TINY_MODEL = TINY_VIT  # the default where nothing names a model (random weights in tests, a bare checkpoint)
BIG_MODEL, BIG_PRETRAINED = "ViT-bigG-14", "laion2b_s39b_b160k"  # the seed's backbone


def is_package_config(model: str) -> bool:
    """One of the package's own small configs (model_configs/*.json), made to run on a CPU."""
    return (CONFIG_DIR / f"{model}.json").is_file()
