"""search: one typed query against an encoded gallery, printed as ranked names (and a thumbnail grid).

A ``Gallery`` holds what a search needs (names, embeddings, readable mask, a kind per image)
behind one method, ``search(query_emb, k, kind)``, so an approximate index can replace the
dense product later. Images are found by name in the gallery's own table, never by joining a
user's text onto a folder: that table is the only way ``serve`` reaches a file.

The kind filter: ``auto`` treats the query as ``infer`` does (routed by the vocabulary, whole
gallery); ``vehicle`` or ``pedestrian`` forces that kind and keeps only images of that shape
(vehicle crops are wide, pedestrian crops tall, in the challenge data as in the synthetic one).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
from PIL import Image

from .fileio import InputError
from .encode import encode_texts, gallery_embeddings, list_images
from .index import VectorIndex, add_index_argument, load_index
from .infer import add_model_arguments, find_vocabulary, optional_path
from .models import LoadedModel, load_model
from .prepare import Layout
from .rank import topk_blocked
from .routing import DEFAULT_VEHICLE_PROMPT, enhance, route
from .vocab import Vocabulary

log = logging.getLogger(__name__)
KINDS = ("auto", "vehicle", "pedestrian")
Filter = Literal["auto", "vehicle", "pedestrian"]


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path``, symlinks resolved, lies in ``folder`` (so a link out of the gallery is refused)."""
    try:
        return path.resolve(strict=True).is_relative_to(folder.resolve(strict=True))
    except OSError:
        return False


def kind_by_shape(path: Path) -> str:
    """"vehicle" for a wide (or square) image, "pedestrian" for a tall one; reads only the header."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception:  # unreadable images are masked by ``ok`` anyway
        return "vehicle"
    return "vehicle" if w >= h else "pedestrian"


@dataclass
class Gallery:
    """An encoded gallery: the backend a search runs on."""

    folder: Path
    names: list[str]
    embeddings: np.ndarray  # n x d, L2-normalised
    ok: np.ndarray  # readable images; the others are never returned
    kinds: np.ndarray  # "vehicle" | "pedestrian" per image
    index: Optional[VectorIndex] = None  # a faiss index over the same rows, searched instead when given
    _by_name: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.embeddings) == len(self.ok) == len(self.kinds)):
            raise ValueError("names, embeddings, ok and kinds need one entry per image")
        self._by_name = {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def search(self, query_emb: np.ndarray, k: int, kind: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and indices (n_queries x <=k), best first, over readable images of ``kind`` (None: all)."""
        valid = self.ok if kind is None else self.ok & (self.kinds == kind)
        if self.index is not None:
            return self.index.search(query_emb, k, valid)
        return topk_blocked(query_emb, self.embeddings, k, valid=valid)

    def path(self, name: str) -> Optional[Path]:
        """The file of a gallery image by exact name, or None when the name is not in the table or
        the file (through symlinks) is no longer inside the gallery folder."""
        if name not in self._by_name:
            return None
        path = self.folder / self.names[self._by_name[name]]
        return path if inside(path, self.folder) else None


def load_gallery(
    loaded: LoadedModel, folder: Path, cache_dir: Optional[Path] = None, square_pad: bool = True,
    batch_size: int = 64, workers: int = 2, progress: bool = True, index: Optional[VectorIndex] = None,
) -> Gallery:
    """Encode (or read from the cache) the images of ``folder``; files linked from outside it are left out.
    With ``index`` (built from exactly these images), its vectors are used and nothing is encoded."""
    folder = Path(folder)
    paths = list_images(folder)
    outside = [p for p in paths if not inside(p, folder)]
    if outside:
        log.warning("%d gallery entries point outside %s and are left out, e.g. %s", len(outside), folder, outside[0])
        paths = [p for p in paths if inside(p, folder)]
    if index is not None:
        index.check(loaded, square_pad, [p.name for p in paths])
        emb, ok = index.embeddings(), index.ok
    else:
        emb, ok = gallery_embeddings(loaded, paths, cache_dir, square_pad, False, batch_size, workers, progress=progress)
    kinds = np.array([kind_by_shape(p) for p in paths], dtype=object)
    return Gallery(folder, [p.name for p in paths], emb, ok, kinds, index)


@dataclass
class Hit:
    rank: int
    name: str
    score: float


@dataclass
class Answer:
    query: str
    kind: str  # the kind the query was treated as
    text: str  # what was encoded: the query, with the prompt enhancement when it applies
    hits: list[Hit]


def answer(
    gallery: Gallery, loaded: LoadedModel, vocab: Vocabulary, query: str, kind: Filter = "auto", k: int = 10,
    vehicle_prompt: str = DEFAULT_VEHICLE_PROMPT,
) -> Answer:
    """Route (or force) the kind, enhance as ``infer`` does, encode and search."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    treated = route([query], vocab)[0] if kind == "auto" else kind
    text = enhance(query, treated, vehicle_prompt)
    scores, indices = gallery.search(encode_texts(loaded, [text]), k, None if kind == "auto" else kind)
    hits = [Hit(r + 1, gallery.names[j], float(s)) for r, (s, j) in enumerate(zip(scores[0], indices[0]))]
    return Answer(query, treated, text, hits)


def gallery_folder(data: Path, gallery: Optional[Path]) -> Path:
    return Path(gallery) if gallery else Layout(Path(data)).images("test")


def open_gallery(args: argparse.Namespace, progress: bool = True) -> tuple[Gallery, LoadedModel, Vocabulary]:
    """Model, encoded gallery and vocabulary from the arguments of ``add_gallery_arguments``."""
    folder = gallery_folder(args.data, args.gallery)
    if not folder.is_dir():  # before the model loads: a wrong path fails at once
        raise InputError(folder, None, "gallery folder not found (give --data DIR or --gallery FOLDER)")
    index = load_index(args.index)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_model(args.model, args.pretrained, device, "fp32", args.square_pad)
    gallery = load_gallery(loaded, folder, args.cache_dir, args.square_pad,
                           args.batch_size, args.workers, progress, index)
    return gallery, loaded, find_vocabulary(args.data, args.vocab)


def add_gallery_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``search`` and ``serve`` share: where the gallery is, how it is encoded."""
    p.add_argument("--data", type=Path, default=Path("data/datasets"), help="challenge root (default data/datasets)")
    p.add_argument("--gallery", type=Path, default=None, help="image folder (default DATA/test/test_images)")
    p.add_argument("--vocab", type=Path, default=None, help="car_attribute.json for routing (default: as infer finds it)")
    p.add_argument("--vehicle-prompt", default=DEFAULT_VEHICLE_PROMPT,
                   help="text appended to vehicle queries ('' disables the prompt enhancement)")
    p.add_argument("--cache-dir", type=optional_path, default=Path("data/cache"),
                   help="embedding cache ('' disables)")
    add_index_argument(p)
    add_model_arguments(p)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def format_answer(result: Answer) -> str:
    lines = [f"query: {result.query}", f"kind: {result.kind}   encoded: {result.text}"]
    width = max((len(h.name) for h in result.hits), default=0)
    lines += [f"{h.rank:>4}  {h.name:<{width}}  {h.score:.4f}" for h in result.hits]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    gallery, loaded, vocab = open_gallery(args)
    result = answer(gallery, loaded, vocab, args.query, args.kind, args.topk, args.vehicle_prompt)
    print(format_answer(result))
    if args.grid:
        from .report import plot_topk

        plot_topk([f"{result.query}  [{result.kind}]"], [[h.name for h in result.hits]], None, gallery.folder,
                  args.grid, k=max(1, len(result.hits)))
        print(f"grid -> {args.grid}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="rank the gallery for one typed query and print the top-k",
        description=(
            "Reads the images of --gallery (default DATA/test/test_images), encoding them once into --cache-dir. "
            "Prints rank, image name and cosine score; with --grid, writes a PNG of the top-k thumbnails."
        ),
    )
    p.add_argument("query", help='the description, e.g. "a red SUV"')
    p.add_argument("--kind", choices=KINDS, default="auto",
                   help="auto: route as infer does; vehicle/pedestrian: force it and keep only images of that shape")
    p.add_argument("--topk", type=positive, default=10, help="results to print (default 10)")
    p.add_argument("--grid", type=Path, default=None, help="PNG of the top-k thumbnails to write")
    add_gallery_arguments(p)
    p.set_defaults(func=run)
