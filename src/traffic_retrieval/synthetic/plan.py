"""The synthetic dataset's plan: which participant each image shows, its label line and file name.

Planning is separate from drawing (``generate``), so label statistics can be checked without
rendering. Vehicles come from the real vocabulary (colour x type x brand), pedestrians from the real
captions' attribute priors; training labels are partial in the real proportions and captions are
phrased as the real ones. The same seed gives the same plan.
"""

from __future__ import annotations

import math
import random
import string
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from ..core.attributes import Pedestrian, Vehicle
from ..core.captions import VEHICLE_STYLES, pedestrian_caption, vehicle_caption
from ..core.labels import SEP, Label
from ..core.routing import enhance
from ..core.vocab import Vocabulary, packaged_vocabulary
from .style import Style

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

# The pretrain split stands in for the web data CLIP was pretrained on, which holds camera images
# too, some captioned as such: a share of it is drawn in the surveillance style, and those vehicle
# captions end with the seed's prompt phrase. This is the knowledge that the seed's prompt
# enhancement and its choice of a large, lighting-robust CLIP relied on.
PRETRAIN_SURVEILLANCE = 0.3

# Mean number of images sharing one attribute combination in a split; it sets the number of
# relevant images per test query (real galleries hold several images of one description).
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
    vocab = vocab or packaged_vocabulary()
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


def ground_truth(items: Sequence[Item]) -> list[str]:
    """Organisers' lines ``query$relevant...``: the relevant images share the query image's attribute."""
    by_attribute: dict[str, list[str]] = {}
    for it in items:
        by_attribute.setdefault(it.attribute, []).append(it.name)
    return [SEP.join([it.caption, *by_attribute[it.attribute]]) for it in items]
