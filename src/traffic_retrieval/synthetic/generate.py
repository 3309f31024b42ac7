"""generate: draw a planned synthetic dataset into the challenge's exact layout.

Writes, under ``out``::

    train/train_images/*.jpg   train/train_label.txt      web style, partial vehicle labels
    val/val_images/*.jpg       val/val_label.txt          web style, partial vehicle labels
    {train,val,pretrain}/*_label_truth.txt    synthetic only: vehicle labels with their true completion
    test/test_images/*.jpg     test/test_text.txt         surveillance style, one query per image
                               test/test_ground_truth.txt organisers' format: query$relevant1.jpg$...
    pretrain/pretrain_images/  pretrain/pretrain_label.txt  (with --pretrain) complete labels; mostly web
                               style, 30% surveillance style with the seed's prompt phrase on vehicle captions
    synthetic.json             the marker: what synth wrote (seed, sizes, version), so that it
                               only ever replaces a dataset of its own

The dataset is drawn into a temporary folder beside ``out`` and swapped in whole; a folder that
holds anything synth did not write is refused unless ``force``. The same seed gives identical bytes.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..core.attributes import Vehicle
from ..core.fileio import InputError, atomic_write_text, folder_beside, swap_in_folder
from ..core.labels import write_labels
from ..core.metadata import format_time, parse_time, sidecar_path
from .pedestrians import render_pedestrian
from .plan import SPLITS, Item, ground_truth, plan
from .vehicles import render_vehicle


def render_item(item: Item) -> bytes:
    """The item's JPEG bytes (fixed quality, no metadata: identical bytes for identical items)."""
    rng = np.random.default_rng(list(item.entropy))
    draw = render_vehicle if isinstance(item.subject, Vehicle) else render_pedestrian
    buf = io.BytesIO()
    draw(item.subject, rng, item.style).save(buf, "JPEG", quality=90 if item.style == "web" else 80)
    return buf.getvalue()


def _rendered(items: Sequence[Item], pool, progress: bool, desc: str):
    it = pool.imap(render_item, items, chunksize=32) if pool else map(render_item, items)
    return tqdm(it, total=len(items), desc=desc, unit="img", disable=not progress)


MARKER = "synthetic.json"
# The drawing's revision, in the marker: bumped whenever what a seed draws changes (2: the brand's
# badge became a two-colour code that survives the surveillance degradation), so that a dataset of an
# older drawing is drawn again instead of being taken for the current one.
REVISION = 2
SYNTHETIC_DATA = Path("data/synthetic")  # never data/datasets, where the README puts the real data


def synthetic_root(seed: int, train: int, val: int, test: int, pretrain: int = 0,
                   vehicle_fraction: Optional[float] = None) -> Path:
    """The default folder of a synthetic dataset, named by what shapes it, so that datasets of other
    seeds or sizes never share a folder (nor the prepared files beside it)."""
    name = f"seed{seed}-train{train}-val{val}-test{test}-pretrain{pretrain}"
    if vehicle_fraction is not None:
        name += f"-vehicles{vehicle_fraction:g}"
    return SYNTHETIC_DATA / name / "datasets"


def marker(sizes: dict[str, int], seed: int, vehicle_fraction: Optional[float]) -> dict:
    """What a generation writes, as its marker file records it."""
    return {"generator": "traffic-retrieval synth", "version": __version__, "revision": REVISION, "seed": seed,
            "sizes": {split: int(sizes.get(split, 0)) for split in SPLITS}, "vehicle_fraction": vehicle_fraction}


def written_by_synth(out: Path) -> Optional[dict]:
    """The marker of the dataset in ``out``, or None when synth did not write it."""
    try:
        return json.loads((Path(out) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def drawn_subjects(out: Path, split: str) -> dict:
    """Image name -> the participant synth drew in it, for a split of a dataset synth wrote (the truth
    that benchmarks score attribute predictions against; the real data has none)."""
    found = written_by_synth(out)
    if found is None:
        raise InputError(out, None, "not a dataset written by traffic-retrieval synth: it has no drawn attributes")
    items = plan(found["sizes"], found["seed"], vehicle_fraction=found["vehicle_fraction"])[split]
    return {it.name: it.subject for it in items}


def check_replaceable(out: Path, force: bool = False) -> None:
    """InputError unless ``out`` is absent, empty or a dataset of synth's own (its marker, its splits,
    nothing else); ``force`` lets a folder of other data be replaced."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, None, "is a file; synth writes a dataset folder: choose another --out")
    if not out.exists() or force:
        return
    found = written_by_synth(out)
    own = {MARKER, *(s for s, n in found["sizes"].items() if n)} if found else set()
    foreign = sorted(p.name for p in out.iterdir() if p.name not in own)
    if foreign:
        shown = ", ".join(foreign[:4]) + (", ..." if len(foreign) > 4 else "")
        raise InputError(out, None, f"holds data that synth did not write ({shown}; no {MARKER} lists it): "
                                    "choose another --out, or pass --force to replace the folder")


def _write_split(root: Path, split: str, items: Sequence[Item], pool, progress: bool) -> None:
    folder = root / split
    images = folder / f"{split}_images"
    images.mkdir(parents=True)
    for data, item in zip(_rendered(items, pool, progress, split), items):  # the bar first: it ends at N/N
        (images / item.name).write_bytes(data)
    if split == "test":
        atomic_write_text(folder / "test_text.txt", "".join(it.caption + "\n" for it in items))
        atomic_write_text(folder / "test_ground_truth.txt", "".join(line + "\n" for line in ground_truth(items)))
    else:
        write_labels(folder / f"{split}_label.txt", [it.label for it in items])
        # Synthetic only: the true completion of every vehicle label, in the augmented 4-field form,
        # so that augmentation accuracy can be measured.
        write_labels(folder / f"{split}_label_truth.txt",
                     [replace(it.label, completed=it.subject.to_text()) for it in items if isinstance(it.subject, Vehicle)])


CAMERAS = 20  # the cameras a --metadata sidecar spreads the test images over
METADATA_DAY = "2024-05-01T00:00:00Z"  # the day its times fall in


def metadata_rows(names: Sequence[str], seed: int) -> str:
    """A sidecar CSV (``core.metadata``) for the test images ``names``: each a camera 1-20 and a time
    within one day, drawn from ``seed`` (not from the images: a filter on them keeps a random subset)."""
    rng = np.random.default_rng([seed, 29])
    cameras = rng.integers(1, CAMERAS + 1, len(names))
    times = parse_time(METADATA_DAY) + rng.integers(0, 86400, len(names)) * 10**6
    return "image,camera,timestamp\n" + "".join(f"{n},{c},{format_time(int(t))}\n"
                                                 for n, c, t in zip(names, cameras, times))


def _pool_for(workers: int, n: int):
    return multiprocessing.Pool(workers) if workers > 1 and n >= 200 else None


def generate(out: Path, train: int, val: int, test: int, seed: int = 0, pretrain: int = 0, workers: int = 2,
             progress: bool = True, vehicle_fraction: Optional[float] = None, force: bool = False,
             metadata: bool = False) -> None:
    """Write the dataset under ``out`` (see the module docstring): drawn beside it, then swapped in whole,
    so that ``out`` always holds one complete generation. A split of size 0 is not written. A folder
    holding anything synth did not write is refused (InputError) before any drawing, unless ``force``.
    ``metadata``: also ``test/test_images.metadata.csv``, a camera and a time for each test image
    (``metadata_rows``), for search and serve's filters."""
    out = Path(out)
    check_replaceable(out, force)
    sizes = {"train": train, "val": val, "test": test, "pretrain": pretrain}
    items = plan(sizes, seed, vehicle_fraction=vehicle_fraction)
    new = folder_beside(out)
    pool = _pool_for(workers, sum(map(len, items.values())))
    try:
        for split, split_items in items.items():
            _write_split(new, split, split_items, pool, progress)
        if metadata and items.get("test"):
            atomic_write_text(sidecar_path(new / "test" / "test_images"),
                              metadata_rows(sorted(it.name for it in items["test"]), seed))
        atomic_write_text(new / MARKER, json.dumps(marker(sizes, seed, vehicle_fraction), indent=1) + "\n")
        swap_in_folder(new, out)
    finally:
        if pool:
            pool.close()
            pool.join()
        shutil.rmtree(new, ignore_errors=True)


def ensure_dataset(out: Path, train: int, val: int, test: int, seed: int = 0, pretrain: int = 0, workers: int = 2,
                   progress: bool = True, vehicle_fraction: Optional[float] = None) -> bool:
    """Draw the dataset into ``out`` unless it already holds exactly this one (its marker says so);
    True when it drew. Never replaces data synth did not write (see ``generate``)."""
    sizes = {"train": train, "val": val, "test": test, "pretrain": pretrain}
    if written_by_synth(out) == marker(sizes, seed, vehicle_fraction):
        return False
    generate(out, train, val, test, seed, pretrain, workers, progress, vehicle_fraction)
    return True


def benchmark(n: int = 1000, workers: int = 2, seed: int = 0) -> float:
    """Images per second of drawing + JPEG encoding (nothing written), half web, half surveillance."""
    items = plan({"train": n // 2, "test": n - n // 2}, seed)
    items = items["train"] + items["test"]
    pool = _pool_for(workers, n)
    try:
        start = time.perf_counter()
        for _ in _rendered(items, pool, progress=False, desc="benchmark"):
            pass
        return n / (time.perf_counter() - start)
    finally:
        if pool:
            pool.close()
            pool.join()
