"""synth: a synthetic traffic dataset in the challenge's exact layout (the project's embedded default).

Writes, under ``out``::

    train/train_images/*.jpg   train/train_label.txt      web style, partial vehicle labels
    val/val_images/*.jpg       val/val_label.txt          web style, partial vehicle labels
    {train,val,pretrain}/*_label_truth.txt    synthetic only: vehicle labels with their true completion
    test/test_images/*.jpg     test/test_text.txt         surveillance style, one query per image
                               test/test_ground_truth.txt organisers' format: query$relevant1.jpg$...
    pretrain/pretrain_images/  pretrain/pretrain_label.txt  (with --pretrain) complete labels; mostly web
                               style, 30% surveillance style with the seed's prompt phrase on vehicle captions

Planning (which participant, which label, which file name) is separate from drawing, so label
statistics can be checked without rendering. Every split is written to a temporary folder and
renamed into place, and the same seed gives identical bytes.
"""

from __future__ import annotations

import argparse
import io
import math
import multiprocessing
import random
import shutil
import string
import textwrap
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from .attributes import Pedestrian, Vehicle
from .captions import VEHICLE_STYLES, pedestrian_caption, vehicle_caption
from .fileio import atomic_write_bytes, atomic_write_text
from .labels import SEP, Label, write_labels
from .routing import enhance
from .render import Style, default_vocabulary, render_pedestrian, render_vehicle
from .vocab import Vocabulary

SPLITS = ("train", "val", "test", "pretrain")
_SPLIT_ID = {s: i for i, s in enumerate(SPLITS)}

# Share of vehicles among the images: 46,117 of 136,117 in the real train split, 7,611 of 17,611 in test.
REAL_VEHICLE_FRACTION = {"train": 46117 / 136117, "val": 46117 / 136117, "test": 7611 / 17611,
                         "pretrain": 46117 / 136117}

# Partial training labels, counted over the 42,704 lines of ../shared/data/real_vehicle_labels_train.txt
# by parsing each attribute field with the challenge vocabulary: 36,139 colour + brand ("white Audi"),
# 6,023 type alone ("Truck"), 542 brand alone ("Hongyan" or "Balong Heavy Truck", the only two).
LABEL_FORMS = {"colour_brand": 36139 / 42704, "type": 6023 / 42704, "brand": 542 / 42704}
LONE_BRANDS = ("Hongyan", "Balong Heavy Truck")
# Caption prefixes of the same lines: 21,480 "This is a/an", 21,224 "A/An"; no final period.
THIS_IS_A = 21480 / 42704

# Mean number of images sharing one attribute combination in a split; it sets the number of
# relevant images per test query (real galleries hold several images of one description).
# The pretrain split stands in for the web data CLIP was pretrained on, which holds camera images
# too, some captioned as such: a share of it is drawn in the surveillance style, and those vehicle
# captions end with the seed's prompt phrase. This is the knowledge that the seed's prompt
# enhancement and its choice of a large, lighting-robust CLIP relied on.
PRETRAIN_SURVEILLANCE = 0.3

GROUP_SIZE = {"train": 6, "val": 6, "test": 6, "pretrain": 1}

# Plausible types of a brand (weights); brands not listed build passenger cars.
PASSENGER = {"Sedan": 0.55, "SUV": 0.35, "Minivan": 0.1}
BRAND_TYPES: dict[str, dict[str, float]] = {
    "Yutong": {"Bus": 0.85, "Microbus": 0.15},
    "Golden Dragon": {"Bus": 0.8, "Microbus": 0.2},
    "KINGLONG": {"Bus": 0.6, "Microbus": 0.25, "Minivan": 0.15},
    "Hongyan": {"Truck": 1.0},
    "Shacman": {"Truck": 1.0},
    "Balong Heavy Truck": {"Truck": 1.0},
    "Style": {"Truck": 0.6, "Sedan": 0.25, "Microbus": 0.15},
    "FOTON": {"Truck": 0.6, "Minivan": 0.2, "Microbus": 0.2},
    "Isuzu": {"Truck": 0.6, "SUV": 0.4},
    "JMC": {"Truck": 0.4, "SUV": 0.4, "Microbus": 0.2},
    "ZXAUTO": {"Truck": 0.6, "SUV": 0.4},
    "Iveco": {"Minivan": 0.4, "Microbus": 0.4, "Truck": 0.2},
    "Jinbei": {"Minivan": 0.5, "Microbus": 0.5},
    "SGMW": {"Minivan": 0.7, "Microbus": 0.3},
    "HAFEI": {"Minivan": 0.5, "Microbus": 0.5},
    "BAOJUN": {"SUV": 0.4, "Minivan": 0.4, "Sedan": 0.2},
    "Chana": {"SUV": 0.4, "Sedan": 0.3, "Minivan": 0.3},
    "Dongfeng": {"SUV": 0.4, "Sedan": 0.3, "Truck": 0.3},
    "FAW": {"Sedan": 0.4, "SUV": 0.3, "Truck": 0.3},
    "BYD": {"Sedan": 0.5, "SUV": 0.3, "Bus": 0.2},
    "Shuanghuan": {"SUV": 0.6, "Sedan": 0.25, "Microbus": 0.15},
    "GreatWall": {"SUV": 0.6, "Sedan": 0.3, "Microbus": 0.1},
    "LEOPAARD": {"SUV": 0.85, "Sedan": 0.15},
    "Landrover": {"SUV": 0.85, "Sedan": 0.15},
    "Jeep": {"SUV": 0.85, "Sedan": 0.15},
    "Luxgen": {"SUV": 0.6, "Sedan": 0.4},
    "BESTUNE": {"SUV": 0.6, "Sedan": 0.4},
}

# Pedestrian priors: the marginals of the 3,293 captions of ../shared/data/real_pedestrian_captions.txt
# read by captions.parse_pedestrian_caption, with the rarest raised to 3% so that a demo-sized
# split shows them at all (real: holding 0.6%, boots 0.6%, over 60 1.4%, splice 2.9%).
GENDER_MALE = 0.557
AGE_PRIOR = {"<18": 0.07, "18-60": 0.9, ">60": 0.03}
ORIENTATION_PRIOR = {"front": 0.34, "back": 0.351, "side": 0.309}
SLEEVE_PRIOR = {None: 0.27, "short": 0.483, "long": 0.247}
PATTERN_PRIOR = {None: 0.716, "upper_stripe": 0.046, "upper_logo": 0.122, "upper_plaid": 0.087, "upper_splice": 0.03}
FLAG_PRIOR = {"hat": 0.044, "handbag": 0.185, "shoulder_bag": 0.173, "backpack": 0.164, "holding": 0.03,
              "long_coat": 0.035, "boots": 0.03}
GLASSES = {"male": 0.262, "female": 0.103}  # real: 27% of captions facing the camera, 24% sideways, 7% from the back
GLASSES_BY_ORIENTATION = {"front": 1.3, "side": 1.15, "back": 0.35}
SKIRT_FEMALE = 0.218  # real: no male caption mentions a skirt or dress

Subject = Union[Vehicle, Pedestrian]


@dataclass(frozen=True)
class Item:
    """One image to draw and its line: ``attribute``/``caption`` are the label's (test: the query)."""

    name: str
    subject: Subject  # the complete attributes drawn in the image
    attribute: str
    caption: str
    style: Style
    entropy: tuple[int, int, int]  # (seed, split, index): the image's own random stream

    @property
    def label(self) -> Label:
        return Label(self.name, self.attribute, self.caption)


def _choice(rng: np.random.Generator, table: Mapping) -> object:
    keys = list(table)
    p = np.asarray(list(table.values()), dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def draw_vehicle(rng: np.random.Generator, vocab: Vocabulary, brands: Sequence[str] = ()) -> Vehicle:
    """A complete vehicle: uniform colour and brand (as in the real labels), a type plausible for the brand."""
    brand = str(rng.choice(list(brands or vocab.brands)))
    types = {t: p for t, p in BRAND_TYPES.get(brand, PASSENGER).items() if t in vocab.types} or dict.fromkeys(vocab.types, 1)
    return Vehicle(str(rng.choice(list(vocab.colours))), brand, str(_choice(rng, types)))


def draw_pedestrian(rng: np.random.Generator) -> Pedestrian:
    """A pedestrian from the real captions' attribute priors."""
    gender = "male" if rng.random() < GENDER_MALE else "female"
    orientation = _choice(rng, ORIENTATION_PRIOR)
    pattern = _choice(rng, PATTERN_PRIOR)
    flags = {f: bool(rng.random() < p) for f, p in FLAG_PRIOR.items()}
    return Pedestrian(
        gender=gender,
        age=_choice(rng, AGE_PRIOR),
        orientation=orientation,
        sleeve=_choice(rng, SLEEVE_PRIOR),
        glasses=bool(rng.random() < GLASSES[gender] * GLASSES_BY_ORIENTATION[orientation]),
        skirt_dress=gender == "female" and bool(rng.random() < SKIRT_FEMALE),
        **({pattern: True} if pattern else {}),
        **flags,
    )


def partial_label(v: Vehicle, form: str) -> Vehicle:
    """What a training label keeps of a complete vehicle: colour + brand, type alone or brand alone."""
    return {"colour_brand": Vehicle(v.colour, v.brand), "type": Vehicle(type=v.type), "brand": Vehicle(brand=v.brand)}[form]


def _pool(draw, n_images: int, group: float) -> list:
    """The split's attribute combinations: about ``n_images / group`` of them."""
    return [draw() for _ in range(max(1, math.ceil(n_images / group)))]


def _pick(pool: list, rng: np.random.Generator, n: int, group: float) -> list:
    """``n`` images' subjects: each combination once when ``group`` is 1, else uniformly from the pool."""
    if group == 1:
        return pool[:n]
    return [pool[i] for i in rng.integers(len(pool), size=n)]


class _Names:
    """Vehicle file names: 10 random lowercase letters, unique across the dataset (like "pmitevanhx.jpg")."""

    def __init__(self, seed: int):
        self.rng, self.taken = np.random.default_rng([seed, len(SPLITS)]), set()

    def __call__(self) -> str:
        while True:
            name = "".join(self.rng.choice(list(string.ascii_lowercase), 10)) + ".jpg"
            if name not in self.taken:
                self.taken.add(name)
                return name


def plan(sizes: Mapping[str, int], seed: int = 0, vocab: Optional[Vocabulary] = None,
         vehicle_fraction: Optional[float] = None) -> dict[str, list[Item]]:
    """Every image of every split with its label line, in file order; no drawing.

    ``sizes`` maps split names (of SPLITS) to image counts. Pedestrian names count up across the
    splits in SPLITS order; vehicle names are random and unique. The test split lists vehicles
    first, then pedestrians, as the real file does.
    """
    vocab = vocab or default_vocabulary()
    names, next_pedestrian = _Names(seed), 0
    lone = [b for b in LONE_BRANDS if b in vocab.brands]
    out: dict[str, list[Item]] = {}
    for split in SPLITS:
        n = int(sizes.get(split, 0))
        if n <= 0:
            continue
        sid, group = _SPLIT_ID[split], GROUP_SIZE[split]
        rng, text_rng = np.random.default_rng([seed, sid]), random.Random(f"{seed}/{split}")
        n_vehicle = round(n * (REAL_VEHICLE_FRACTION[split] if vehicle_fraction is None else vehicle_fraction))
        partial = split in ("train", "val")

        # vehicles: complete identity, then the line (partial label in train/val, complete query in test)
        forms = [_choice(rng, LABEL_FORMS) if partial else None for _ in range(n_vehicle)]
        if not lone:
            forms = [f if f != "brand" else "colour_brand" for f in forms]
        n_lone = forms.count("brand")
        lone_pool = _pool(lambda: draw_vehicle(rng, vocab, lone), n_lone, group) if n_lone else []
        pool = _pool(lambda: draw_vehicle(rng, vocab), n_vehicle - n_lone, group) + lone_pool
        main = iter(_pick(pool, rng, n_vehicle - n_lone, group))
        alone = iter(_pick(lone_pool, rng, n_lone, group))
        vehicles = []
        for form in forms:
            v = next(alone) if form == "brand" else next(main)
            shown = partial_label(v, form) if partial else v
            prefix = VEHICLE_STYLES[0] if rng.random() < THIS_IS_A or split == "test" else VEHICLE_STYLES[1]
            vehicles.append((v, (shown.to_text(), vehicle_caption(shown, prefix, period=split == "test"))))

        pedestrians = _pick(_pool(lambda: draw_pedestrian(rng), n - n_vehicle, group), rng, n - n_vehicle, group)
        kinds = ["vehicle"] * n_vehicle + ["pedestrian"] * (n - n_vehicle)
        if split != "test":
            kinds = [kinds[i] for i in rng.permutation(n)]
        items, v_iter, p_iter = [], iter(vehicles), iter(pedestrians)
        for index, kind in enumerate(kinds):
            style: Style = "surveillance" if split == "test" else "web"
            if split == "pretrain" and rng.random() < PRETRAIN_SURVEILLANCE:
                style = "surveillance"
            if kind == "vehicle":
                subject, (attribute, caption) = next(v_iter)
                if split == "pretrain" and style == "surveillance":
                    caption = enhance(caption, "vehicle")
                name = names()
            else:
                subject = next(p_iter)
                attribute, caption = subject.to_flags(), pedestrian_caption(subject, text_rng)
                name, next_pedestrian = f"{next_pedestrian:06d}.jpg", next_pedestrian + 1
            items.append(Item(name, subject, attribute, caption, style, (seed, sid, index)))
        out[split] = items
    return out


def render_item(item: Item) -> bytes:
    """The item's JPEG bytes (fixed quality, no metadata: identical bytes for identical items)."""
    rng = np.random.default_rng(list(item.entropy))
    draw = render_vehicle if isinstance(item.subject, Vehicle) else render_pedestrian
    buf = io.BytesIO()
    draw(item.subject, rng, item.style).save(buf, "JPEG", quality=90 if item.style == "web" else 80)
    return buf.getvalue()


def ground_truth(items: Sequence[Item]) -> list[str]:
    """Organisers' lines ``query$relevant...``: the relevant images share the query image's attribute."""
    by_attribute: dict[str, list[str]] = {}
    for it in items:
        by_attribute.setdefault(it.attribute, []).append(it.name)
    return [SEP.join([it.caption, *by_attribute[it.attribute]]) for it in items]


def _rendered(items: Sequence[Item], pool, progress: bool, desc: str):
    it = pool.imap(render_item, items, chunksize=32) if pool else map(render_item, items)
    return tqdm(it, total=len(items), desc=desc, unit="img", disable=not progress)


def _write_split(out: Path, split: str, items: Sequence[Item], pool, progress: bool) -> None:
    tmp = out / f".{split}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    images = tmp / f"{split}_images"
    images.mkdir(parents=True)
    for item, data in zip(items, _rendered(items, pool, progress, split)):
        (images / item.name).write_bytes(data)
    if split == "test":
        atomic_write_text(tmp / "test_text.txt", "".join(it.caption + "\n" for it in items))
        atomic_write_text(tmp / "test_ground_truth.txt", "".join(line + "\n" for line in ground_truth(items)))
    else:
        write_labels(tmp / f"{split}_label.txt", [it.label for it in items])
        # Synthetic only: the true completion of every vehicle label, in the augmented 4-field form,
        # so that augmentation accuracy can be measured.
        write_labels(tmp / f"{split}_label_truth.txt",
                     [replace(it.label, completed=it.subject.to_text()) for it in items if isinstance(it.subject, Vehicle)])
    shutil.rmtree(out / split, ignore_errors=True)
    tmp.rename(out / split)


def _pool_for(workers: int, n: int):
    return multiprocessing.Pool(workers) if workers > 1 and n >= 200 else None


def generate(out: Path, train: int, val: int, test: int, seed: int = 0, pretrain: int = 0, workers: int = 2,
             progress: bool = True, vehicle_fraction: Optional[float] = None) -> None:
    """Write the dataset under ``out`` (see the module docstring). A split of size 0 is not written and
    an old one of that name is removed, so that ``out`` always holds one generation."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items = plan({"train": train, "val": val, "test": test, "pretrain": pretrain}, seed, vehicle_fraction=vehicle_fraction)
    for split in set(SPLITS) - set(items):
        shutil.rmtree(out / split, ignore_errors=True)
    pool = _pool_for(workers, sum(map(len, items.values())))
    try:
        for split, split_items in items.items():
            _write_split(out, split, split_items, pool, progress)
    finally:
        if pool:
            pool.close()
            pool.join()


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


# ------------------------------------------------------------------ preview

# The preview's pedestrians: each shows off one or two attributes, so that one sheet covers every flag.
_SHOWCASE: tuple[dict, ...] = (
    {"hat": True, "glasses": True, "orientation": "front"},
    {"backpack": True, "gender": "female", "orientation": "back"},
    {"handbag": True, "upper_stripe": True, "orientation": "side"},
    {"shoulder_bag": True, "upper_logo": True, "orientation": "front"},
    {"holding": True, "upper_plaid": True, "orientation": "side"},
    {"long_coat": True, "boots": True, "orientation": "front"},
    {"skirt_dress": True, "upper_splice": True, "gender": "female", "orientation": "front"},
    {"age": "<18", "backpack": True, "orientation": "side"},
    {"age": ">60", "sleeve": "long", "orientation": "front"},
    {"sleeve": "short", "gender": "male", "orientation": "back"},
    {"sleeve": None, "glasses": True, "orientation": "side"},
    {"age": "<18", "gender": "female", "skirt_dress": True, "orientation": "back"},
)
_PLAIN = {f: False for f in ("hat", "glasses", "handbag", "shoulder_bag", "backpack", "holding", "upper_stripe",
                             "upper_logo", "upper_plaid", "upper_splice", "long_coat", "skirt_dress", "boots")}


def _tile(pair: Sequence[Image.Image], caption: str, box: tuple[int, int], font, text_lines: int) -> Image.Image:
    w, h = box
    line_h = 11
    tile = Image.new("RGB", (2 * w + 4, h + 4 + line_h * text_lines), "white")
    for k, img in enumerate(pair):
        img = img.copy()
        img.thumbnail((w, h))
        tile.paste(img, (k * (w + 4) + (w - img.width) // 2, h - img.height))
    lines = textwrap.wrap(caption, max(8, tile.width // 6))
    ImageDraw.Draw(tile).multiline_text((1, h + 3), "\n".join(lines[:text_lines]), fill=(0, 0, 0), font=font, spacing=1)
    return tile


def _sheet(rows: Sequence[Sequence[Image.Image]], gap: int = 8) -> Image.Image:
    width = max(sum(t.width for t in r) + gap * (len(r) - 1) for r in rows)
    height = sum(max(t.height for t in r) for r in rows) + gap * (len(rows) - 1)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    y = 0
    for r in rows:
        x = 0
        for t in r:
            sheet.paste(t, (x, y))
            x += t.width + gap
        y += max(t.height for t in r) + gap
    return sheet


def preview(out_png: Path, seed: int = 0, n: int = 12) -> None:
    """A contact sheet: ``n`` vehicles (cycling through the types and colours) and ``n`` pedestrians
    (each showing off an attribute or two), each in web style beside surveillance style, captioned."""
    vocab = default_vocabulary()
    rng, text_rng = np.random.default_rng([seed, 99]), random.Random(seed)
    font = ImageFont.load_default()
    styles: tuple[Style, Style] = ("web", "surveillance")
    vehicles, pedestrians = [], []
    for i in range(n):
        wanted = vocab.types[i % len(vocab.types)]
        v = draw_vehicle(rng, vocab)
        while v.type != wanted:
            v = draw_vehicle(rng, vocab)
        v = replace(v, colour=vocab.colours[i % len(vocab.colours)])
        pair = [render_vehicle(v, np.random.default_rng([seed, i, k]), s) for k, s in enumerate(styles)]
        vehicles.append(_tile(pair, vehicle_caption(v, period=True), (118, 76), font, 1))
    for i in range(n):
        p = replace(draw_pedestrian(rng), **{**_PLAIN, **_SHOWCASE[i % len(_SHOWCASE)]})
        pair = [render_pedestrian(p, np.random.default_rng([seed, n + i, k]), s) for k, s in enumerate(styles)]
        pedestrians.append(_tile(pair, pedestrian_caption(p, text_rng), (72, 150), font, 10))
    rows = [vehicles[i:i + 4] for i in range(0, n, 4)] + [pedestrians[i:i + 6] for i in range(0, n, 6)]
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    _sheet(rows).quantize(256, dither=Image.Dither.NONE).save(buf, "PNG", optimize=True)
    atomic_write_bytes(out_png, buf.getvalue())


# ------------------------------------------------------------------ command line


def _run(args: argparse.Namespace) -> int:
    if args.benchmark:
        rate = benchmark(args.benchmark, args.workers, args.seed)
        print(f"{rate:.0f} images/s ({args.benchmark} images, {args.workers} workers, drawing + JPEG encoding)")
        return 0
    if args.preview:
        preview(args.preview, args.seed)
        print(f"wrote {args.preview}")
        return 0
    generate(args.out, args.train, args.val, args.test, args.seed, args.pretrain, args.workers,
             vehicle_fraction=args.vehicle_fraction)
    print(f"wrote {args.out}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="generate the synthetic traffic dataset (challenge layout)",
        description=(
            "Writes a synthetic dataset in the challenge's layout under --out: "
            "{train,val}/<split>_images/*.jpg + <split>_label.txt (web style, partial vehicle labels), "
            "test/test_images/*.jpg + test_text.txt (one query a line) + test_ground_truth.txt "
            "(query$relevant.jpg$...; surveillance style), and with --pretrain N a pretrain/ split with "
            "complete vehicle labels (web style). Reads nothing. The same --seed gives identical bytes. "
            "With --preview PNG only a contact sheet of samples is written; with --benchmark N nothing "
            "is written and the drawing speed is printed."
        ),
    )
    p.add_argument("--out", type=Path, default=Path("data/datasets"), help="dataset root (default: data/datasets)")
    p.add_argument("--train", type=int, default=4000, help="training images (default: 4000)")
    p.add_argument("--val", type=int, default=500, help="validation images (default: 500)")
    p.add_argument("--test", type=int, default=1000, help="test images = queries (default: 1000)")
    p.add_argument("--pretrain", type=int, default=4000, help="web-style images with complete labels (default: 4000; 0: none)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--vehicle-fraction", type=float, metavar="F",
                   help="share of vehicles in every split (default: the real ones, 0.339 train/val, 0.432 test)")
    p.add_argument("--workers", type=int, default=2, help="drawing processes (default: 2)")
    p.add_argument("--preview", type=Path, help="write only a contact sheet PNG of samples and captions")
    p.add_argument("--benchmark", type=int, metavar="N", help="only time drawing N images and print images/s")
    p.set_defaults(func=_run)
