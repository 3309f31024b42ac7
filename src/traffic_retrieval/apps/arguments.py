"""Command-line options that several subcommands share, and the settings objects they become.

Only argparse and the light settings classes here: building a parser must not load torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from ..core.routing import DEFAULT_VEHICLE_PROMPT
from ..retrieval.configs import TINY_MODEL
from ..retrieval.rerank import CANDIDATES, METHODS, RerankSettings

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


def add_data_argument(p: argparse.ArgumentParser, from_run: bool = False) -> None:
    """``--data``; with ``from_run``, a run folder given as ``--pretrained`` supplies the default: the data
    its notebook recorded (run.json), so that the run ranks what it was made on."""
    if from_run:
        p.add_argument("--data", type=Path, default=None,
                       help=f"challenge layout root (default: the data a run folder given as --pretrained recorded, "
                            f"else {DEFAULT_DATA})")
    else:
        p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"challenge layout root (default {DEFAULT_DATA})")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Which model (ModelSettings) and how the gallery is encoded (EncodeSettings)."""
    p.add_argument("--model", default=None,
                   help=f"OpenCLIP model name (default: the model a run folder's params.txt names, else {TINY_MODEL})")
    p.add_argument("--pretrained", required=True,
                   help="required: an OpenCLIP tag (e.g. laion2b_s39b_b160k), a checkpoint file, a training run "
                        "folder (its latest weights, and the query settings it recorded), or none for random "
                        "weights (scores mean nothing)")
    p.add_argument("--square-pad", action=argparse.BooleanOptionalAction, default=None,
                   help="pad images to a square before resizing (default: as the run folder recorded, else on)")
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when present)")
    p.add_argument("--levers", default="none",
                   help="GPU levers, comma-separated: compile, cuda-graphs, gpu-decode (or all; default none: none is "
                        "measured yet, docs/gpu.md); one that cannot run on the device is turned off with a line saying why")
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
                   help="abort at the first unreadable image or non-regular file instead of skipping it")


def add_query_arguments(p: argparse.ArgumentParser) -> None:
    """What happens to queries (QuerySettings): prompt, depth, fusion, re-ranking, flip TTA. Every default is
    the query settings a run folder given as --pretrained recorded (RUN/query.json), else the package's;
    a flag overrides that one setting."""
    as_recorded = "default: as the run folder recorded, else"
    p.add_argument("--topk", type=positive, default=None, help=f"names per query ({as_recorded} 10)")
    p.add_argument("--vehicle-prompt", default=None,
                   help=f"text appended to vehicle queries ('' disables the prompt enhancement; {as_recorded} "
                        f"{DEFAULT_VEHICLE_PROMPT!r})")
    p.add_argument("--vocab", type=Path, default=None, help="car_attribute.json for routing (default: found next to DATA)")
    p.add_argument("--rerank", choices=("none", *METHODS), default=None,
                   help=f"adaption re-ranking of the first candidates ({as_recorded} none)")
    p.add_argument("--rerank-candidates", type=positive, default=None,
                   help=f"first-ranked candidates to re-rank, N ({as_recorded} {CANDIDATES})")
    p.add_argument("--rerank-top-k", type=positive, default=None,
                   help=f"candidates forming the consensus ({as_recorded} {RerankSettings.top_k})")
    p.add_argument("--rerank-weight", type=float, default=None,
                   help=f"step towards the consensus ({as_recorded} {RerankSettings.weight})")
    p.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=None,
                   help=f"average gallery embeddings with their horizontal flips ({as_recorded} off)")
    p.add_argument("--attributes", default=None, metavar="HEADS",
                   help="attribute heads from traffic-retrieval attributes, fused with the similarity ('' or none: "
                        "no fusion; default: the run folder's recorded heads, else none)")
    p.add_argument("--attribute-weight", type=float, default=None,
                   help="weight of the attributes' log-likelihood against CLIP's logit (default: as recorded, else 1, "
                        "chosen on seed 1: docs/shift/select-seed1.txt)")
    p.add_argument("--attribute-centring", dest="attribute_adapt", action=argparse.BooleanOptionalAction, default=None,
                   help="the heads read the gallery centred on its own mean; --no-attribute-centring: on the training "
                        "mean (default: as recorded, else on)")
    p.add_argument("--attribute-candidates", type=positive, default=None,
                   help="first-ranked candidates that fusion re-scores (default: as recorded, else 1000)")
    p.add_argument("--balance", action=argparse.BooleanOptionalAction, default=None,
                   help="correct each image's scores by the whole query bank (an entropic transport plan between "
                        "the queries and the images; default: as recorded, else off)")
    p.add_argument("--balance-temperature", type=float, default=None,
                   help="temperature of the balance's plan, in cosine units (default: as recorded, else 0.1)")
    p.add_argument("--matcher", default=None, metavar="FILE",
                   help="a cross-encoder from traffic-retrieval matcher: re-score the first candidates ('' or none: "
                        "off; default: as recorded, else off)")
    p.add_argument("--matcher-weight", type=float, default=None,
                   help="weight of the cross-encoder's logit against the first score (default: as recorded, else 0.1)")
    p.add_argument("--matcher-candidates", type=positive, default=None,
                   help="first candidates the cross-encoder re-scores (default: as recorded, else 20)")


def add_index_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", type=Path, default=None,
                   help="index folder from traffic-retrieval index: search it instead of encoding the gallery "
                        "(its names must match the gallery listing)")


def overrides(a: argparse.Namespace):
    """The query settings typed on the command line (``run_settings.Overrides``; None: not typed)."""
    from ..retrieval.run_settings import Overrides

    names = ("topk", "vehicle_prompt", "rerank", "rerank_top_k", "rerank_weight", "flip_tta", "attributes",
             "attribute_weight", "attribute_adapt", "attribute_candidates", "balance", "balance_temperature", "matcher",
             "matcher_weight", "matcher_candidates", "square_pad")
    return Overrides(**{name: getattr(a, name, None) for name in names}, candidates=getattr(a, "rerank_candidates", None))


def resolved(a: argparse.Namespace):
    """The run folder's recorded query settings (else the package's) with the typed overrides, once per
    command (``announcement`` says what they apply)."""
    if not hasattr(a, "_resolved"):
        from ..retrieval.run_settings import resolve

        a._resolved = resolve(a.pretrained, overrides(a))
    return a._resolved


def announcement(a: argparse.Namespace) -> str:
    """What a command applies that the user did not type: the data a run folder recorded, and the query
    settings (one line each); printed once the model has loaded, so that a mistake stays one line."""
    lines = [f"data: {a.data} (recorded by the run, {a._data_from})"] if getattr(a, "_data_from", None) else []
    if hasattr(a, "topk"):
        lines.append(resolved(a).line())
    elif getattr(a, "flip_tta", None) is None and recorded(a, "flip_tta", False):
        lines.append("flip TTA, as the run folder recorded (--no-flip-tta: without)")
    return "\n".join(lines)


def data_folder(a: argparse.Namespace) -> Path:
    """``--data``, else the data a run folder given as ``--pretrained`` recorded, else the default."""
    if a.data is not None:
        return a.data
    from ..training import runs

    run = Path(a.pretrained) if a.pretrained and Path(a.pretrained).is_dir() else None
    data = runs.recorded(run).get("notebook", {}).get("data") if run else None
    if data is None:
        return DEFAULT_DATA
    a.data, a._data_from = Path(data), run / runs.RECORD
    return a.data


def recorded(a: argparse.Namespace, name: str, default: bool) -> bool:
    """A switch as typed (``--square-pad``, ``--flip-tta``), else as the run folder given as ``--pretrained``
    recorded it (RUN/query.json), else ``default``: for commands that apply no other query setting."""
    from ..retrieval.run_settings import read_record

    if getattr(a, name, None) is not None:
        return getattr(a, name)
    found = read_record(getattr(a, "pretrained", None))
    return bool(found[0].get(name, default)) if found else default


def model_settings(a: argparse.Namespace):
    from ..retrieval.levers import Levers
    from ..retrieval.models import ModelSettings

    pad = resolved(a).square_pad if hasattr(a, "topk") else recorded(a, "square_pad", True)
    return ModelSettings(a.model, a.pretrained, pad, a.device, Levers.parse(getattr(a, "levers", None)))


def encode_settings(a: argparse.Namespace, chunk: Optional[int] = None):
    from ..retrieval.encode import EncodeSettings

    machine = {name: value for name, value in (("batch_size", a.batch_size), ("workers", a.workers)) if value is not None}
    return EncodeSettings(**machine, chunk=chunk or getattr(a, "chunk", None) or EncodeSettings.chunk,
                          cache_dir=a.cache_dir, strict=a.strict, memory_budget=a.memory_budget)


def query_settings(a: argparse.Namespace):
    """The query settings a command applies (``resolved``)."""
    return resolved(a).query
