"""Drawing of synthetic traffic participants: attributes + style + rng -> a PIL image.

Every attribute the labels state is drawn so that it can be seen (or, like a brand emblem, only
just seen): a vehicle's type is its silhouette, its colour the body paint, its brand a small
emblem; a pedestrian's flags are hair, body proportions, face or back of the head, bags, sleeves,
torso patterns, coat, skirt and boots. Two styles make the challenge's domain shift: ``"web"``
(clean, bright) for training, ``"surveillance"`` (dark, colour cast, noise, blur, low resolution,
road clutter) for the test gallery. Only PIL primitives and vectorised numpy: no pixel loops.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from importlib import resources
from typing import Literal, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .attributes import Pedestrian, Vehicle
from .vocab import Vocabulary

Style = Literal["web", "surveillance"]
STYLES: tuple[Style, ...] = ("web", "surveillance")
RGB = tuple[int, int, int]

# The 11 colour names of the challenge's vocabulary.
COLOUR_RGB: dict[str, RGB] = {
    "black": (28, 28, 32),
    "blue": (30, 80, 200),
    "brown": (115, 70, 35),
    "green": (35, 150, 60),
    "grey": (135, 135, 135),
    "orange": (245, 130, 20),
    "pink": (245, 145, 190),
    "purple": (120, 45, 160),
    "red": (205, 25, 30),
    "white": (245, 245, 245),
    "yellow": (245, 215, 25),
}
VEHICLE_WIDTH_PX = (80, 200)
PEDESTRIAN_HEIGHT_PX = (96, 200)
VEHICLE_ASPECT = (1.3, 2.5)  # crop width / height
PEDESTRIAN_ASPECT = (0.35, 0.6)


def _shade(c: Sequence[float], k: float) -> RGB:
    """Colour ``c`` scaled by ``k`` (k > 1 lightens towards white)."""
    if k <= 1:
        return tuple(int(max(0, v * k)) for v in c)
    return tuple(int(min(255, v + (255 - v) * (k - 1))) for v in c)


def _lit(c: RGB, rng: np.random.Generator, spread: float = 0.12) -> RGB:
    """Colour ``c`` under random lighting: a gain and a small per-channel tint."""
    gain = rng.uniform(1 - spread, 1 + spread) * (1 + rng.normal(0, 0.04, 3))
    return tuple(int(v) for v in np.clip(np.asarray(c) * gain, 0, 255))


# ------------------------------------------------------------------ brand emblems

EMBLEM_SHAPES = ("circle", "ring", "diamond", "triangle", "square", "hbar", "cross", "twin", "chevron", "oval")
EMBLEM_COLOURS: tuple[RGB, ...] = (
    (210, 210, 220), (230, 180, 40), (40, 90, 220), (220, 40, 40), (20, 20, 20), (40, 170, 90), (150, 60, 200),
)


@functools.lru_cache(maxsize=None)
def default_vocabulary() -> Vocabulary:
    """The challenge's vehicle vocabulary (11 colours, 6 types, 65 brands), shipped as package data."""
    return Vocabulary.from_json(resources.files(__package__).joinpath("data/car_attribute.json").read_text("utf-8"))


def emblem_code(brand: str) -> tuple[str, RGB]:
    """The (shape, colour) of a brand's emblem: fixed by the name, distinct across the default vocabulary.

    The i-th brand of the default vocabulary gets shape i mod 10 and colour (4 * (i div 10) + i mod 10) mod 7,
    a bijection for i < 70. A brand outside it falls back to a hash of its name (codes may repeat).
    """
    brands = default_vocabulary().brands
    if brand in brands:
        i = brands.index(brand)
    else:
        i = int(hashlib.sha256(brand.encode()).hexdigest(), 16) % 70
    n = len(EMBLEM_SHAPES)
    return EMBLEM_SHAPES[i % n], EMBLEM_COLOURS[(4 * (i // n) + i % n) % len(EMBLEM_COLOURS)]


def _emblem(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, brand: str) -> None:
    shape, col = emblem_code(brand)
    r = max(r, 1.5)
    box = (cx - r, cy - r, cx + r, cy + r)
    plate = (250, 250, 250) if sum(col) < 200 else (25, 25, 25)
    d.ellipse((cx - r * 1.25, cy - r * 1.25, cx + r * 1.25, cy + r * 1.25), fill=plate)
    if shape == "circle":
        d.ellipse(box, fill=col)
    elif shape == "ring":
        d.ellipse(box, outline=col, width=max(1, round(r * 0.45)))
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=col)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=col)
    elif shape == "square":
        d.rectangle((cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8), fill=col)
    elif shape == "hbar":
        d.rectangle((cx - r, cy - r * 0.35, cx + r, cy + r * 0.35), fill=col)
    elif shape == "cross":
        d.rectangle((cx - r, cy - r * 0.3, cx + r, cy + r * 0.3), fill=col)
        d.rectangle((cx - r * 0.3, cy - r, cx + r * 0.3, cy + r), fill=col)
    elif shape == "twin":
        d.ellipse((cx - r, cy - r * 0.5, cx, cy + r * 0.5), fill=col)
        d.ellipse((cx, cy - r * 0.5, cx + r, cy + r * 0.5), fill=col)
    elif shape == "chevron":
        d.polygon([(cx - r, cy - r * 0.6), (cx, cy + r * 0.2), (cx + r, cy - r * 0.6), (cx + r, cy + r * 0.1),
                   (cx, cy + r * 0.9), (cx - r, cy + r * 0.1)], fill=col)
    else:  # oval
        d.ellipse((cx - r, cy - r * 0.6, cx + r, cy + r * 0.6), fill=col)


# ------------------------------------------------------------------ backgrounds and styles


def _background(w: int, h: int, style: Style, rng: np.random.Generator) -> Image.Image:
    """Web: a pale two-tone gradient. Surveillance: grey asphalt, darker at the top."""
    if style == "web":
        top, bottom = rng.uniform(185, 250, 3), rng.uniform(170, 245, 3)
    else:
        g = rng.uniform(70, 120)
        top, bottom = g * rng.uniform(0.85, 1.0, 3), g * rng.uniform(1.0, 1.2, 3)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    arr = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3))
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def _clutter(d: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator, vertical: bool) -> None:
    """Road clutter of surveillance crops: lane marks and other road users cut by the crop edge."""
    for _ in range(rng.integers(1, 3)):
        col = (230, 230, 220) if rng.random() < 0.7 else (225, 190, 40)
        lw = max(2, round(min(w, h) * rng.uniform(0.03, 0.06)))
        if vertical:
            x = rng.uniform(0, w)
            for y in np.arange(rng.uniform(-h / 4, 0), h, h / 3):
                d.line([(x, y), (x + rng.uniform(-3, 3), y + h / 6)], fill=col, width=lw)
        else:
            y = rng.uniform(h * 0.55, h)
            for x in np.arange(rng.uniform(-w / 4, 0), w, w / 3):
                d.line([(x, y), (x + w / 6, y + rng.uniform(-2, 2))], fill=col, width=lw)
    for _ in range(rng.integers(0, 3)):
        col = tuple(int(c) for c in rng.integers(20, 200, 3))
        side = rng.integers(4)
        a, b = sorted(rng.uniform(0, 1, 2))
        depth = rng.uniform(0.06, 0.18)
        box = {
            0: (-5, a * h, depth * w, b * h + 5),
            1: ((1 - depth) * w, a * h, w + 5, b * h + 5),
            2: (a * w, -5, b * w + 5, depth * h),
            3: (a * w, (1 - depth) * h, b * w + 5, h + 5),
        }[int(side)]
        d.rectangle(box, fill=col)


def _finish(img: Image.Image, style: Style, rng: np.random.Generator) -> Image.Image:
    """Web images stay clean; surveillance ones get the camera's colour cast, noise, blur and low resolution."""
    if style == "web":
        return img
    w, h = img.size
    f = rng.uniform(1.5, 2.5)
    img = img.resize((max(8, round(w / f)), max(8, round(h / f))), Image.BILINEAR)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    arr = np.asarray(img, dtype=np.float32)
    cast = rng.uniform(0.5, 0.85) * (1 + rng.normal(0, 0.1, 3))  # dark, with a colour cast
    arr = arr * cast + rng.uniform(-5, 25) + rng.normal(0, rng.uniform(3, 9), arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return img.resize((w, h), Image.BILINEAR)


# ------------------------------------------------------------------ vehicles


@dataclass(frozen=True)
class _Body:
    """A side profile in metres (x from the rear, y up from the ground), clockwise."""

    outline: tuple[tuple[float, float], ...]
    glass: tuple[tuple[tuple[float, float], ...], ...]
    wheels: tuple[float, ...]
    wheel_r: float
    lamp_y: float  # height of head- and tail-lamps
    front_top: float  # top of the front face (the bonnet's leading edge)
    screen: int  # index of the outline edge that is the windscreen
    width: float  # the vehicle's width, seen in the three-quarter view
    cargo: tuple[float, float, float, float] | None = None  # a truck's box: x0, x1, y0, y1

    @property
    def length(self) -> float:
        return max(x for x, _ in self.outline)

    @property
    def height(self) -> float:
        return max(max(y for _, y in self.outline), self.cargo[3] if self.cargo else 0)


def _windows(x0: float, x1: float, y0: float, y1: float, n: int, gap: float) -> tuple:
    step = (x1 - x0) / n
    return tuple(((x0 + i * step + gap / 2, y0), (x0 + (i + 1) * step - gap / 2, y0),
                  (x0 + (i + 1) * step - gap / 2, y1), (x0 + i * step + gap / 2, y1)) for i in range(n))


BODIES: dict[str, _Body] = {
    # Three boxes: a low boot, a sloped glasshouse, a long bonnet.
    "Sedan": _Body(
        outline=((0, 0.3), (0.02, 0.82), (0.4, 0.92), (1.25, 0.95), (1.8, 1.42), (2.85, 1.45), (3.45, 0.98),
                 (4.45, 0.86), (4.6, 0.62), (4.55, 0.3)),
        glass=(((1.4, 0.98), (1.85, 1.36), (2.3, 1.37), (2.3, 0.98)), ((2.38, 0.98), (2.38, 1.38), (2.82, 1.39), (3.3, 0.98))),
        wheels=(0.95, 3.65), wheel_r=0.33, lamp_y=0.62, front_top=0.86, screen=5, width=1.8),
    # Two boxes, tall, short bonnet, upright tailgate.
    "SUV": _Body(
        outline=((0, 0.35), (0.02, 1.05), (0.12, 1.72), (3.15, 1.76), (3.75, 1.18), (4.5, 1.08), (4.62, 0.8),
                 (4.58, 0.35)),
        glass=_windows(0.22, 3.1, 1.18, 1.62, 3, 0.12)[:2] + (((2.16, 1.18), (2.16, 1.62), (3.08, 1.64), (3.6, 1.18)),),
        wheels=(0.9, 3.7), wheel_r=0.4, lamp_y=0.82, front_top=1.08, screen=3, width=1.9),
    # One and a half boxes: long roof, long raked windscreen down to a stubby nose.
    "Minivan": _Body(
        outline=((0, 0.32), (0.03, 1.1), (0.15, 1.78), (3.2, 1.8), (4.45, 1.0), (4.8, 0.9), (4.82, 0.35)),
        glass=_windows(0.25, 3.1, 1.15, 1.65, 3, 0.12) + (((3.2, 1.15), (3.2, 1.68), (3.3, 1.68), (4.2, 1.1)),),
        wheels=(0.9, 3.95), wheel_r=0.34, lamp_y=0.68, front_top=0.9, screen=3, width=1.85),
    # A tall box with a flat, rounded front and a row of windows: a small bus.
    "Microbus": _Body(
        outline=((0, 0.3), (0, 2.02), (0.12, 2.15), (4.25, 2.15), (4.45, 1.95), (4.5, 1.25), (4.5, 0.3)),
        glass=_windows(0.2, 3.9, 1.35, 1.95, 4, 0.12) + (((4.0, 1.3), (4.0, 1.95), (4.4, 1.9), (4.45, 1.3)),),
        wheels=(0.85, 3.55), wheel_r=0.3, lamp_y=0.65, front_top=1.25, screen=4, width=1.9),
    # A long box with many windows, a door and a tall windscreen.
    "Bus": _Body(
        outline=((0, 0.35), (0, 2.9), (0.15, 3.0), (8.35, 3.0), (8.5, 2.85), (8.5, 1.2), (8.5, 0.35)),
        glass=_windows(0.3, 7.2, 1.7, 2.7, 6, 0.15) + (((7.35, 0.5), (7.95, 0.5), (7.95, 2.7), (7.35, 2.7)),
                                                         ((8.1, 1.2), (8.45, 1.2), (8.45, 2.75), (8.1, 2.75))),
        wheels=(1.5, 6.6), wheel_r=0.5, lamp_y=0.65, front_top=1.2, screen=4, width=2.5),
    # A cab at the front and a taller cargo box behind it.
    "Truck": _Body(
        outline=((5.1, 0.45), (5.1, 2.55), (6.35, 2.6), (6.9, 2.35), (7.0, 1.4), (7.0, 0.45)),
        glass=(((5.9, 1.6), (6.4, 1.6), (6.4, 2.4), (5.9, 2.4)), ((6.5, 1.6), (6.95, 1.6), (6.8, 2.3), (6.5, 2.35))),
        wheels=(1.0, 2.05, 6.0), wheel_r=0.45, lamp_y=0.7, front_top=1.4, screen=3, width=2.4,
        cargo=(0, 5.0, 0.5, 3.05)),
}


def render_vehicle(v: Vehicle, rng: np.random.Generator, style: Style) -> Image.Image:
    """A wide crop of a complete vehicle, seen from the side or three-quarter front, either direction.

    The three-quarter view is an oblique extrusion of the side profile: the far side is the profile
    shifted by the vehicle's width, and every edge facing the camera sweeps a face (bonnet, grille,
    windscreen, roof) between the two.
    """
    if not v.complete:
        raise ValueError(f"only a complete vehicle can be drawn, got {v.to_text()!r}")
    body = BODIES[v.type]
    paint = _lit(COLOUR_RGB[v.colour], rng)
    quarter = rng.random() < 0.45
    squash = rng.uniform(0.6, 0.8) if quarter else 1.0  # foreshortened side in the three-quarter view
    ox = body.width * rng.uniform(0.5, 0.7) if quarter else 0.0
    oy = body.width * rng.uniform(0.08, 0.18) if quarter else 0.0
    extent_x, extent_y = body.length * squash + ox, body.height + oy

    w = int(rng.integers(*VEHICLE_WIDTH_PX, endpoint=True))
    margin_x = rng.uniform(0.03, 0.1)
    scale = w * (1 - 2 * margin_x) / extent_x
    h = extent_y * scale * (1 + rng.uniform(0.08, 0.3))
    h = min(max(round(h), math.ceil(w / VEHICLE_ASPECT[1])), math.floor(w / VEHICLE_ASPECT[0]))
    scale = min(scale, h * 0.92 / extent_y)
    x0 = rng.uniform(0.02, 0.98) * (w - extent_x * scale)
    ground = h - rng.uniform(0.02, 0.6) * (h - extent_y * scale)
    flip = rng.random() < 0.5

    def px(x: float, y: float, depth: float = 0.0) -> tuple[float, float]:
        """Side-profile metres (x, y) at ``depth`` (0 near side, 1 far side) -> pixels."""
        u = x0 + (x * squash + depth * ox) * scale
        return (w - u if flip else u), ground - (y + depth * oy) * scale

    img = _background(w, h, style, rng)
    d = ImageDraw.Draw(img)
    if style == "surveillance":
        _clutter(d, w, h, rng, vertical=False)
    lw = max(1, round(scale * 0.04))
    dark = _shade(paint, 0.45) if sum(paint) > 120 else (90, 90, 95)
    glass = _lit((45, 60, 80), rng, 0.2)
    shadow = _shade(np.asarray(img.getpixel((w // 2, h - 1))), 0.6)
    (a, b), (c, e) = px(-0.1, 0.15), px(body.length + 0.1, -0.05, 1.0)
    d.ellipse((min(a, c), min(b, e), max(a, c), max(b, e)), fill=shadow)

    def solid(outline, colour: RGB, screen: int = -1) -> None:
        """The faces swept by edges facing the camera, then the near side on top."""
        if quarter:
            n = len(outline)
            for i in range(n):
                (xa, ya), (xb, yb) = outline[i], outline[(i + 1) % n]
                nx, ny = -(yb - ya), xb - xa  # outward normal of a clockwise outline
                if nx * ox + ny * oy <= 0:
                    continue
                fill = glass if i == screen else _shade(colour, 1.15 if abs(ny) > abs(nx) else 0.92)
                d.polygon([px(xa, ya), px(xb, yb), px(xb, yb, 1), px(xa, ya, 1)], fill=fill, outline=dark)
        d.polygon([px(x, y) for x, y in outline], fill=colour, outline=dark, width=lw)

    if body.cargo:
        cx0, cx1, cy0, cy1 = body.cargo
        box = _shade(paint, rng.uniform(0.8, 0.95))
        solid(((cx0, cy0), (cx0, cy1), (cx1, cy1), (cx1, cy0)), box)
        for x in np.linspace(cx0, cx1, 6)[1:-1]:
            d.line([px(x, cy0 + 0.1), px(x, cy1 - 0.1)], fill=_shade(box, 0.75), width=lw)
        d.polygon([px(cx0, 0.45), px(body.length, 0.45), px(body.length, 0.6), px(cx0, 0.6)], fill=(40, 40, 40))
    solid(body.outline, paint, body.screen)
    x_lo, x_hi = min(x for x, _ in body.outline), body.length
    d.polygon([px(x_lo + 0.05, 0.32), px(x_hi - 0.05, 0.32), px(x_hi - 0.05, 0.45), px(x_lo + 0.05, 0.45)],
              fill=_shade(paint, 0.7))
    for pane in body.glass:
        d.polygon([px(x, y) for x, y in pane], fill=glass)
    d.polygon([px(x_lo, body.lamp_y), px(x_lo + 0.12, body.lamp_y), px(x_lo + 0.12, body.lamp_y + 0.15),
               px(x_lo, body.lamp_y + 0.15)], fill=(200, 20, 20))
    for wx in body.wheels:
        cx, cy = px(wx, body.wheel_r)
        r = body.wheel_r * scale
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(22, 22, 22))
        d.ellipse((cx - r * 0.5, cy - r * 0.5, cx + r * 0.5, cy + r * 0.5), fill=(150, 150, 155))

    if quarter:  # the front face: grille with the emblem between two lamps, bumper
        def fp(u: float, y: float) -> tuple[float, float]:
            return px(x_hi - 0.02, y, u)

        ly = body.lamp_y
        d.polygon([fp(0.3, ly - 0.22), fp(0.7, ly - 0.22), fp(0.7, ly + 0.16), fp(0.3, ly + 0.16)], fill=(35, 35, 38))
        for u in (0.05, 0.77):
            d.polygon([fp(u, ly), fp(u + 0.18, ly), fp(u + 0.18, ly + 0.14), fp(u, ly + 0.14)], fill=(250, 245, 200))
        d.polygon([fp(0, 0.32), fp(1, 0.32), fp(1, 0.4), fp(0, 0.4)], fill=(35, 35, 35))
        _emblem(d, *fp(0.5, ly - 0.03), 0.1 * scale, v.brand)
    else:
        d.polygon([px(x_hi - 0.15, body.lamp_y), px(x_hi, body.lamp_y), px(x_hi, body.lamp_y + 0.14),
                   px(x_hi - 0.15, body.lamp_y + 0.14)], fill=(250, 240, 190))
        _emblem(d, *px(x_hi - 0.4, body.lamp_y), 0.11 * scale, v.brand)
    return _finish(img, style, rng)


# ------------------------------------------------------------------ pedestrians

SKIN: tuple[RGB, ...] = ((245, 205, 170), (225, 180, 140), (190, 140, 100), (140, 95, 65))
HAIR: tuple[RGB, ...] = ((25, 20, 18), (60, 40, 25), (100, 70, 40))
GREY_HAIR: RGB = (205, 205, 210)
CLOTH: tuple[RGB, ...] = (
    (30, 30, 35), (230, 230, 230), (200, 40, 40), (40, 70, 170), (50, 130, 70), (230, 200, 60), (120, 120, 125),
    (150, 90, 50), (90, 40, 120), (235, 130, 160), (40, 160, 180), (240, 140, 40),
)


def _pick(rng: np.random.Generator, options: Sequence, avoid: Sequence = ()) -> RGB:
    choices = [o for o in options if o not in avoid]
    return choices[int(rng.integers(len(choices)))]


def render_pedestrian(p: Pedestrian, rng: np.random.Generator, style: Style) -> Image.Image:
    """A tall crop of one pedestrian facing the camera, turned away, or in profile."""
    child, old = p.age == "<18", p.age == ">60"
    h = int(rng.integers(*PEDESTRIAN_HEIGHT_PX, endpoint=True) * (0.7 if child else 1.0))
    w = min(max(round(h * rng.uniform(*PEDESTRIAN_ASPECT)), math.ceil(h * PEDESTRIAN_ASPECT[0])),
            math.floor(h * PEDESTRIAN_ASPECT[1]))
    fig = h * rng.uniform(0.84, 0.95) * (0.97 if old else 1.0)  # figure height in pixels
    cx = w / 2 + rng.uniform(-0.06, 0.06) * w
    top = (h - fig) * rng.uniform(0.3, 0.8)
    side = p.orientation == "side"
    d_x = -1.0 if rng.random() < 0.5 else 1.0  # which way a profile faces

    def P(x: float, y: float) -> tuple[float, float]:
        """Figure coordinates (fractions of the figure height; x rightwards, or forwards in profile)."""
        return cx + d_x * x * fig, top + y * fig

    def poly(points, fill) -> None:
        d.polygon([P(x, y) for x, y in points], fill=fill)

    def oval(x0, y0, x1, y1, fill) -> None:
        (a, b), (c, e) = P(x0, y0), P(x1, y1)
        d.ellipse((min(a, c), min(b, e), max(a, c), max(b, e)), fill=fill)

    def bar(x0, y0, x1, y1, fill) -> None:
        poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill)

    img = _background(w, h, style, rng)
    d = ImageDraw.Draw(img)
    if style == "surveillance":
        _clutter(d, w, h, rng, vertical=True)

    skin = _pick(rng, SKIN)
    hair = GREY_HAIR if old else _pick(rng, HAIR)
    upper = _pick(rng, CLOTH)
    lower = _pick(rng, CLOTH, avoid=[upper])
    accent = _pick(rng, CLOTH, avoid=[upper, lower])  # patterns contrast with both
    upper, lower = _lit(upper, rng, 0.08), _lit(lower, rng, 0.08)
    coat = _lit(_pick(rng, CLOTH[:2] + CLOTH[6:8]), rng, 0.08)
    bag = _pick(rng, ((60, 35, 20), (20, 20, 20), (160, 30, 40), (200, 170, 120)))

    # proportions: children have big heads and short bodies; elders stoop
    head = 0.18 if child else 0.13
    hw = head * 0.4
    shoulder_y = head + 0.03
    hip_y = 0.56 if child else 0.52
    sw = (0.085 if child else 0.12 if p.gender == "male" else 0.1) * (0.55 if side else 1.0)
    hipw = (0.07 if child else 0.085 if p.gender == "male" else 0.095) * (0.7 if side else 1.0)
    lean = 0.05 if old else 0.0  # head and shoulders forward (profile) or lowered (front/back)
    stoop_x = lean if side else 0.0
    head_y = lean * 0.4 if not side else lean * 0.3
    arm_w = 0.04
    knee_y = 0.76
    coat_len = 0.82

    # things behind the body
    if p.backpack and p.orientation == "side":
        bar(-sw - 0.09, shoulder_y + 0.02, -sw + 0.01, hip_y - 0.06, bag)
    if p.gender == "female" and p.orientation == "front":  # long hair framing the face
        bar(-hw * 1.25, head_y + head * 0.3, hw * 1.25, shoulder_y + 0.09, hair)
    if p.holding and p.orientation == "back":  # a box held in front shows at both sides
        bar(-sw - 0.04, hip_y - 0.14, sw + 0.04, hip_y - 0.02, (190, 145, 90))

    # legs: trousers, or skin under a skirt; boots or shoes
    leg = lower if not p.skirt_dress else skin
    if side:
        stride = rng.uniform(0.06, 0.12)
        for sgn in (-1, 1):
            foot = sgn * stride
            poly([(-0.035, hip_y), (0.035, hip_y), (foot + 0.03, 0.97), (foot - 0.03, 0.97)], leg)
            if p.boots:
                poly([(foot - 0.035, 0.86), (foot + 0.035, 0.86), (foot + 0.05, 1.0), (foot - 0.035, 1.0)], (60, 40, 25))
            else:
                poly([(foot - 0.03, 0.965), (foot + 0.06, 0.965), (foot + 0.06, 1.0), (foot - 0.03, 1.0)], (30, 30, 30))
    else:
        gap = 0.008
        for sgn in (-1, 1):
            poly([(sgn * gap, hip_y), (sgn * hipw, hip_y), (sgn * 0.07, 0.97), (sgn * gap, 0.97)], leg)
            if p.boots:
                bar(sgn * gap, 0.86, sgn * 0.08, 1.0, (60, 40, 25))
            else:
                bar(sgn * gap, 0.965, sgn * 0.075, 1.0, (30, 30, 30))
    if p.skirt_dress:
        poly([(-hipw, hip_y - 0.03), (hipw, hip_y - 0.03), (hipw + 0.06, knee_y), (-hipw - 0.06, knee_y)], lower)

    # torso (a long coat reaches the knees), its pattern, then arms
    torso = [(-sw + stoop_x, shoulder_y), (sw + stoop_x, shoulder_y), (hipw, hip_y), (-hipw, hip_y)]
    if p.long_coat:
        poly([(-sw + stoop_x, shoulder_y), (sw + stoop_x, shoulder_y), (hipw + 0.05, coat_len), (-hipw - 0.05, coat_len)], coat)
        if not side:
            d.line([P(0, shoulder_y + 0.04), P(0, coat_len)], fill=_shade(coat, 0.6), width=max(1, round(fig * 0.006)))
    else:
        poly(torso, upper)
    body_top, body_bottom = shoulder_y + 0.01, hip_y - 0.01
    x_l, x_r = min(x for x, _ in torso), max(x for x, _ in torso)
    if not p.long_coat:
        lw = max(1, round(fig * 0.008))
        if p.upper_stripe:
            for y in np.linspace(body_top + 0.04, body_bottom - 0.02, 5):
                d.line([P(x_l + 0.01, y), P(x_r - 0.01, y)], fill=accent, width=max(2, round(fig * 0.015)))
        if p.upper_plaid:
            for y in np.linspace(body_top + 0.03, body_bottom - 0.02, 5):
                d.line([P(x_l + 0.01, y), P(x_r - 0.01, y)], fill=accent, width=lw)
            for x in np.linspace(x_l + 0.02, x_r - 0.02, 5 if not side else 3):
                d.line([P(x, body_top), P(x, body_bottom)], fill=accent, width=lw)
        if p.upper_splice:  # two big colour blocks
            poly([(0 + stoop_x / 2, shoulder_y), (sw + stoop_x, shoulder_y), (hipw, hip_y), (0, hip_y)], accent)
            bar(x_l, body_top + 0.12, x_r, body_top + 0.15, _shade(accent, 0.6))
        if p.upper_logo and p.orientation != "back":
            c = (0.0 if not side else 0.01, shoulder_y + 0.1)
            oval(c[0] - 0.035, c[1] - 0.035, c[0] + 0.035, c[1] + 0.035, _shade(accent, 1.3))
            oval(c[0] - 0.018, c[1] - 0.018, c[0] + 0.018, c[1] + 0.018, _shade(accent, 0.5))
        elif p.upper_logo:
            bar(-0.04, shoulder_y + 0.05, 0.04, shoulder_y + 0.13, _shade(accent, 1.3))

    # arms: sleeve length shows as cloth vs skin
    sleeve_colour = coat if p.long_coat else upper
    sleeve_end = {"long": 1.0, "short": 0.4, None: 0.0}[p.sleeve] if not p.long_coat else 1.0
    arm_len = hip_y - shoulder_y + 0.07
    arms = [(0.02 + stoop_x, rng.uniform(-0.05, 0.05))] if side else [(-sw - arm_w / 2, -0.02), (sw + arm_w / 2, 0.02)]
    hands = []
    for ax, swing in arms:
        outward = np.sign(ax) * 0.012 if not side else swing
        if p.holding and p.orientation != "back":
            outward = 0.03 if side else -np.sign(ax) * 0.02
        ex, ey = ax + outward * 2, shoulder_y + arm_len * (0.8 if p.holding else 1.0)
        s_x, s_y = ax + (ex - ax) * sleeve_end, shoulder_y + (ey - shoulder_y) * sleeve_end
        if sleeve_end < 1.0:
            poly([(ax - arm_w / 2, shoulder_y), (ax + arm_w / 2, shoulder_y), (ex + arm_w / 2, ey), (ex - arm_w / 2, ey)], skin)
        if sleeve_end > 0:
            poly([(ax - arm_w / 2, shoulder_y), (ax + arm_w / 2, shoulder_y), (s_x + arm_w / 2, s_y), (s_x - arm_w / 2, s_y)],
                 sleeve_colour)
        oval(ex - arm_w * 0.6, ey - 0.005, ex + arm_w * 0.6, ey + arm_w, skin)
        hands.append((ex, ey))

    # bags and a held box
    if p.shoulder_bag:
        sx0 = sw * 0.8 + stoop_x if not side else stoop_x
        bx = -hipw - 0.03 if not side else -0.05
        d.line([P(sx0, shoulder_y), P(bx + 0.02, hip_y - 0.02)], fill=_shade(bag, 0.8), width=max(2, round(fig * 0.012)))
        bar(bx - 0.05, hip_y - 0.05, bx + 0.04, hip_y + 0.05, bag)
    if p.backpack and p.orientation == "back":
        bar(-sw * 0.85, shoulder_y + 0.02, sw * 0.85, hip_y - 0.05, bag)
        bar(-sw * 0.6, hip_y - 0.17, sw * 0.6, hip_y - 0.08, _shade(bag, 1.25))
    elif p.backpack and p.orientation == "front":
        for x in (-sw * 0.55, sw * 0.55):
            bar(x - 0.015, shoulder_y, x + 0.015, hip_y - 0.1, bag)
    if p.handbag:
        hx, hy = hands[-1]
        d.line([P(hx, hy), P(hx + 0.015, hy + 0.04)], fill=(40, 40, 40), width=max(1, round(fig * 0.006)))
        poly([(hx - 0.03, hy + 0.04), (hx + 0.05, hy + 0.04), (hx + 0.06, hy + 0.11), (hx - 0.04, hy + 0.11)], bag)
    if p.holding and p.orientation != "back":
        box_x = (0.06 + stoop_x, 0.17 + stoop_x) if side else (-sw * 0.85, sw * 0.85)
        bar(box_x[0], hip_y - 0.14, box_x[1], hip_y - 0.01, (190, 145, 90))
        d.line([P(box_x[0], hip_y - 0.08), P(box_x[1], hip_y - 0.08)], fill=(140, 100, 60), width=max(1, round(fig * 0.006)))
    if old:  # a walking stick
        hx, hy = hands[0]
        d.line([P(hx, hy), P(hx + 0.02, 1.0)], fill=(90, 60, 30), width=max(2, round(fig * 0.01)))

    # head: face, back of the head or profile; hair, glasses, hat
    neck_x = stoop_x
    bar(neck_x - 0.02, head_y + head * 0.8, neck_x + 0.02, shoulder_y + 0.01, skin)
    hx0, hx1, hy0, hy1 = neck_x - hw, neck_x + hw, head_y, head_y + head
    long_hair = p.gender == "female"
    if p.orientation == "back":
        oval(hx0, hy0, hx1, hy1, hair)
        if long_hair:
            poly([(hx0, hy0 + head * 0.5), (hx1, hy0 + head * 0.5), (hx1 + 0.01, shoulder_y + 0.1), (hx0 - 0.01, shoulder_y + 0.1)], hair)
    elif p.orientation == "front":
        oval(hx0, hy0, hx1, hy1, skin)
        oval(hx0 - 0.004, hy0 - 0.004, hx1 + 0.004, hy0 + head * 0.45, hair)
        bar(hx0 + hw * 0.2, hy0 + head * 0.3, hx1 - hw * 0.2, hy0 + head * 0.4, skin)
        ey = hy0 + head * 0.5
        for ex in (neck_x - hw * 0.42, neck_x + hw * 0.42):
            oval(ex - hw * 0.12, ey - hw * 0.1, ex + hw * 0.12, ey + hw * 0.1, (30, 25, 25))
        if p.glasses:
            for ex in (neck_x - hw * 0.42, neck_x + hw * 0.42):
                (a, b), (c, e) = P(ex - hw * 0.33, ey - hw * 0.25), P(ex + hw * 0.33, ey + hw * 0.25)
                d.rectangle((min(a, c), b, max(a, c), e), outline=(10, 10, 10), width=max(1, round(fig * 0.007)))
            d.line([P(neck_x - hw * 0.1, ey), P(neck_x + hw * 0.1, ey)], fill=(10, 10, 10), width=max(1, round(fig * 0.005)))
        d.line([P(neck_x - hw * 0.25, hy0 + head * 0.78), P(neck_x + hw * 0.25, hy0 + head * 0.78)], fill=(150, 60, 60))
    else:  # profile, facing +x
        oval(hx0, hy0, hx1, hy1, skin)
        poly([(hx1 - 0.005, hy0 + head * 0.45), (hx1 + 0.018, hy0 + head * 0.6), (hx1 - 0.005, hy0 + head * 0.65)], skin)
        oval(hx0 - 0.004, hy0 - 0.004, hx1 + 0.002, hy0 + head * 0.42, hair)
        oval(hx0 - 0.004, hy0, neck_x, hy1 - head * 0.15, hair)
        if long_hair:
            bar(hx0 - 0.004, hy0 + head * 0.3, neck_x - hw * 0.2, shoulder_y + 0.08, hair)
        ey = hy0 + head * 0.5
        oval(hx1 - hw * 0.45, ey - hw * 0.1, hx1 - hw * 0.25, ey + hw * 0.1, (30, 25, 25))
        if p.glasses:
            d.line([P(hx1 - hw * 0.55, ey), P(hx1 + 0.004, ey)], fill=(10, 10, 10), width=max(2, round(fig * 0.009)))
            d.line([P(hx1 - hw * 0.55, ey), P(neck_x - hw * 0.2, ey - 0.005)], fill=(10, 10, 10), width=max(1, round(fig * 0.005)))
    if p.hat:
        hat = _pick(rng, ((200, 30, 30), (30, 30, 30), (240, 240, 240), (40, 80, 180), (230, 190, 40)), avoid=[hair])
        oval(hx0 - 0.01, hy0 - head * 0.2, hx1 + 0.01, hy0 + head * 0.55, hat)
        brim = (hx0 - 0.004, hx1 + 0.035) if side else (hx0 - 0.02, hx1 + 0.02)
        bar(brim[0], hy0 + head * 0.22, brim[1], hy0 + head * 0.32, _shade(hat, 0.75))
    return _finish(img, style, rng)
