"""Command-line options that several subcommands share, and the settings objects they become.

Only argparse and the light settings classes here: building a parser must not load torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..core.routing import DEFAULT_VEHICLE_PROMPT
from ..retrieval.configs import TINY_MODEL
from ..retrieval.rerank import METHODS, RerankSettings

if TYPE_CHECKING:  # fusion imports torch: loaded only when --attributes is given
    from ..retrieval.fusion import Fusion

DEFAULT_DATA = Path("data/datasets")
DEFAULT_CACHE = Path("data/cache")


def optional_path(text: str) -> Optional[Path]:
    """argparse type: '' means none."""
    return Path(text) if text.strip() else None


def positive(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def gibibytes(text: str) -> int:
    """argparse type: a positive number of GiB, as bytes."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of GiB, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return int(value * 2**30)


def add_data_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"challenge layout root (default {DEFAULT_DATA})")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Which model (ModelSettings) and how the gallery is encoded (EncodeSettings)."""
    p.add_argument("--model", default=None,
                   help=f"OpenCLIP model name (default: the model a run folder's params.txt names, else {TINY_MODEL})")
    p.add_argument("--pretrained", required=True,
                   help="required: an OpenCLIP tag (e.g. laion2b_s39b_b160k), a checkpoint file, a training run "
                        "folder (its latest weights), or none for random weights (scores mean nothing)")
    p.add_argument("--no-square-pad", dest="square_pad", action="store_false", help="resize without square padding")
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when present)")
    p.add_argument("--batch-size", type=positive, default=None,
                   help="images a batch (default: the machine's choice, 256 where CUDA is present, else 64)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader worker processes (default: the machine's choice, one a core up to 16 where CUDA "
                        "is present, else 0: on a CPU the model's threads use every core and workers compete with them)")
    p.add_argument("--cache-dir", type=optional_path, default=DEFAULT_CACHE,
                   help="embedding store: half-precision shards written as they are encoded ('' disables: in memory)")
    p.add_argument("--memory-budget", type=gibibytes, default=None, metavar="GIB",
                   help="memory an exact search over the gallery may hold in blocks (default: a quarter of the machine's)")
    p.add_argument("--strict", action="store_true",
                   help="abort at the first unreadable image instead of skipping it (never ranking it)")


def add_query_arguments(p: argparse.ArgumentParser, topk_default: int = 10) -> None:
    """What happens to queries (QuerySettings): prompt, depth, re-ranking, flip TTA."""
    p.add_argument("--topk", type=positive, default=topk_default, help=f"names per query (default {topk_default})")
    p.add_argument("--vehicle-prompt", default=DEFAULT_VEHICLE_PROMPT,
                   help="text appended to vehicle queries ('' disables the prompt enhancement)")
    p.add_argument("--vocab", type=Path, default=None, help="car_attribute.json for routing (default: found next to DATA)")
    p.add_argument("--rerank", choices=("none", *METHODS), default="none",
                   help="adaption re-ranking of the first candidates (default none)")
    p.add_argument("--rerank-candidates", type=positive, default=50, help="first-ranked candidates to re-rank (N)")
    p.add_argument("--rerank-top-k", type=positive, default=RerankSettings.top_k, help="candidates forming the consensus")
    p.add_argument("--rerank-weight", type=float, default=RerankSettings.weight, help="step towards the consensus")
    p.add_argument("--flip-tta", action="store_true", help="average gallery embeddings with their horizontal flips")
    p.add_argument("--attributes", type=Path, default=None,
                   help="attribute heads from traffic-retrieval attributes: fuse them with the similarity")
    p.add_argument("--attribute-weight", type=float, default=1.0,
                   help="weight of the attributes' log-likelihood against CLIP's logit (default 1, chosen on "
                        "seed 1: docs/shift/select-seed1.txt)")
    p.add_argument("--no-attribute-centring", dest="attribute_adapt", action="store_false",
                   help="the heads read the gallery centred on the training mean, not on the gallery's own")
    p.add_argument("--attribute-candidates", type=positive, default=1000,
                   help="first-ranked candidates that fusion re-scores (default 1000)")


def add_index_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", type=Path, default=None,
                   help="index folder from traffic-retrieval index: search it instead of encoding the gallery "
                        "(its names must match the gallery listing)")


def model_settings(a: argparse.Namespace):
    from ..retrieval.models import ModelSettings

    return ModelSettings(a.model, a.pretrained, a.square_pad, a.device)


def encode_settings(a: argparse.Namespace, chunk: Optional[int] = None):
    from ..retrieval.encode import EncodeSettings

    machine = {name: value for name, value in (("batch_size", a.batch_size), ("workers", a.workers)) if value is not None}
    return EncodeSettings(**machine, chunk=chunk or getattr(a, "chunk", None) or EncodeSettings.chunk,
                          cache_dir=a.cache_dir, strict=a.strict, memory_budget=a.memory_budget)


def rerank_settings(a: argparse.Namespace) -> Optional[RerankSettings]:
    if a.rerank == "none":
        return None
    return RerankSettings(method=a.rerank, top_k=a.rerank_top_k, weight=a.rerank_weight)


def fusion_settings(a: argparse.Namespace) -> Optional[Fusion]:
    """The attribute fusion of ``--attributes`` (heads loaded, and checked against the model, only when asked)."""
    if a.attributes is None:
        return None
    from ..retrieval.fusion import AttributeHeads, Fusion

    return Fusion(AttributeHeads.load(a.attributes), a.attribute_weight, a.attribute_candidates, a.attribute_adapt)


def query_settings(a: argparse.Namespace):
    from ..retrieval.pipeline import QuerySettings

    return QuerySettings(a.topk, a.vehicle_prompt, rerank_settings(a), a.rerank_candidates, a.flip_tta,
                         fusion_settings(a))
