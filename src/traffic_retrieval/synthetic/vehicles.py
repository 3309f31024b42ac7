"""Vehicles: a wide crop of a complete vehicle. The type is the silhouette, the colour the body
paint, the brand a two-colour badge on the flank (and the grille) with wheel hubs to match, seen
from the side or in a three-quarter front view, either direction.

The badge is sized by the vehicle's height (``EMBLEM_RADIUS``), not in metres: a crop is resized to
the model's input (64 px for the tiny model) whatever the vehicle, so a badge in metres would be a
pixel on a bus. It is 6-10 px across at the model's input, and its code is two colours, not a shape:
a shape of a few pixels does not survive the surveillance blur and resolution, colours do. Telling
65 colour pairs apart under a camera's colour cast stays fine-grained and hard, like a real badge or
grille in a 224 px crop, but it is recoverable (benchmarks/recoverability.py measures it).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..core.attributes import Vehicle
from ..core.vocab import packaged_vocabulary
from .style import COLOUR_RGB, RGB, Style, background, clutter, finish, lit, shade

VEHICLE_WIDTH_PX = (80, 200)
VEHICLE_ASPECT = (1.3, 2.5)  # crop width / height
EMBLEM_RADIUS = 0.2  # the badge's radius, as a fraction of the body's height
PLATE: RGB = (125, 125, 130)  # the badge's plate: a neutral grey, on which every badge colour shows

# The badge's colours: saturated hues apart from each other, and white and black. A brand is an
# ordered pair of two of them (upper half, lower half): 9 x 8 = 72 codes for the 65 brands. A split
# into upper and lower halves reads the same whichever way the vehicle faces.
BADGE_COLOURS: tuple[RGB, ...] = (
    (220, 35, 35), (240, 125, 25), (235, 205, 30), (40, 175, 70), (30, 190, 215), (40, 80, 230), (205, 50, 195),
    (245, 245, 245), (15, 15, 18),
)
_PAIRS = tuple((a, b) for a in range(len(BADGE_COLOURS)) for b in range(len(BADGE_COLOURS)) if a != b)


def badge_code(brand: str) -> tuple[RGB, RGB]:
    """The (upper, lower) colours of a brand's badge: fixed by the name, distinct across the default
    vocabulary (the i-th brand takes the i-th pair; a brand outside it a pair by a hash of its name,
    which may repeat one). The wheel hubs wear the upper colour too, a second cue of the same code."""
    brands = packaged_vocabulary().brands
    i = brands.index(brand) if brand in brands else int(hashlib.sha256(brand.encode()).hexdigest(), 16)
    a, b = _PAIRS[i % len(_PAIRS)]
    return BADGE_COLOURS[a], BADGE_COLOURS[b]


def _badge(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, brand: str) -> None:
    """A round badge on a grey plate: its upper half in the brand's first colour, its lower in the second."""
    upper, lower = badge_code(brand)
    r = max(r, 1.5)
    d.ellipse((cx - r * 1.2, cy - r * 1.2, cx + r * 1.2, cy + r * 1.2), fill=PLATE)
    d.pieslice((cx - r, cy - r, cx + r, cy + r), 180, 360, fill=upper)
    d.pieslice((cx - r, cy - r, cx + r, cy + r), 0, 180, fill=lower)


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


@dataclass(frozen=True)
class _View:
    """Where the vehicle sits in its crop: side view, or a three-quarter view in which the far side is
    the profile shifted by (ox, oy) metres and the near side is squashed; ``flip`` mirrors it."""

    w: int
    h: int
    scale: float  # pixels per metre
    x0: float
    ground: float
    quarter: bool
    squash: float
    ox: float
    oy: float
    flip: bool

    def px(self, x: float, y: float, depth: float = 0.0) -> tuple[float, float]:
        """Side-profile metres (x, y) at ``depth`` (0 near side, 1 far side) -> pixels."""
        u = self.x0 + (x * self.squash + depth * self.ox) * self.scale
        return (self.w - u if self.flip else u), self.ground - (y + depth * self.oy) * self.scale


def _view(body: _Body, rng: np.random.Generator) -> _View:
    """A random view of ``body``: wide crops of the given width range and aspect, some margin around."""
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
    return _View(w, h, scale, x0, ground, quarter, squash, ox, oy, flip=bool(rng.random() < 0.5))


@dataclass(frozen=True)
class _Painter:
    d: ImageDraw.ImageDraw
    view: _View
    dark: RGB  # outlines
    glass: RGB
    lw: int  # outline width

    def solid(self, outline, colour: RGB, screen: int = -1) -> None:
        """An extruded outline: in the three-quarter view the faces swept by edges facing the camera
        (``screen``: the edge that is the windscreen, glazed), then the near side on top."""
        v, px = self.view, self.view.px
        if v.quarter:
            n = len(outline)
            for i in range(n):
                (xa, ya), (xb, yb) = outline[i], outline[(i + 1) % n]
                nx, ny = -(yb - ya), xb - xa  # outward normal of a clockwise outline
                if nx * v.ox + ny * v.oy <= 0:
                    continue
                fill = self.glass if i == screen else shade(colour, 1.15 if abs(ny) > abs(nx) else 0.92)
                self.d.polygon([px(xa, ya), px(xb, yb), px(xb, yb, 1), px(xa, ya, 1)], fill=fill, outline=self.dark)
        self.d.polygon([px(x, y) for x, y in outline], fill=colour, outline=self.dark, width=self.lw)


def _cargo(pen: _Painter, body: _Body, paint: RGB, rng: np.random.Generator) -> None:
    """A truck's cargo box with its panel seams and the chassis beam under it."""
    px = pen.view.px
    cx0, cx1, cy0, cy1 = body.cargo
    box = shade(paint, rng.uniform(0.8, 0.95))
    pen.solid(((cx0, cy0), (cx0, cy1), (cx1, cy1), (cx1, cy0)), box)
    for x in np.linspace(cx0, cx1, 6)[1:-1]:
        pen.d.line([px(x, cy0 + 0.1), px(x, cy1 - 0.1)], fill=shade(box, 0.75), width=pen.lw)
    pen.d.polygon([px(cx0, 0.45), px(body.length, 0.45), px(body.length, 0.6), px(cx0, 0.6)], fill=(40, 40, 40))


def _side(pen: _Painter, body: _Body, paint: RGB, hub: RGB) -> None:
    """The body in its paint, the sill, the windows, a tail lamp and the wheels (hubs in ``hub``)."""
    px, d = pen.view.px, pen.d
    pen.solid(body.outline, paint, body.screen)
    x_lo, x_hi = min(x for x, _ in body.outline), body.length
    d.polygon([px(x_lo + 0.05, 0.32), px(x_hi - 0.05, 0.32), px(x_hi - 0.05, 0.45), px(x_lo + 0.05, 0.45)],
              fill=shade(paint, 0.7))
    for pane in body.glass:
        d.polygon([px(x, y) for x, y in pane], fill=pen.glass)
    d.polygon([px(x_lo, body.lamp_y), px(x_lo + 0.12, body.lamp_y), px(x_lo + 0.12, body.lamp_y + 0.15),
               px(x_lo, body.lamp_y + 0.15)], fill=(200, 20, 20))
    for wx in body.wheels:
        cx, cy = px(wx, body.wheel_r)
        r = body.wheel_r * pen.view.scale
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(22, 22, 22))
        d.ellipse((cx - r * 0.55, cy - r * 0.55, cx + r * 0.55, cy + r * 0.55), fill=hub)


def _badge_spot(body: _Body) -> tuple[float, float]:
    """Where the flank badge sits (metres): between the wheels, centred on the panel between the sill
    and the windows, or on a truck's cargo box."""
    x = (body.wheels[0] + body.wheels[-1]) / 2
    if body.cargo:
        return x, (body.cargo[2] + body.cargo[3]) / 2
    return x, (0.45 + min(y for pane in body.glass for _, y in pane)) / 2


def _front(pen: _Painter, body: _Body, brand: str) -> None:
    """Three-quarter view: the front face (grille with a badge between two lamps, bumper); side view:
    a head lamp. Either way a larger badge on the flank, the view every crop shows."""
    v, d = pen.view, pen.d
    x_hi, ly = body.length, body.lamp_y
    if v.quarter:
        def fp(u: float, y: float) -> tuple[float, float]:
            return v.px(x_hi - 0.02, y, u)

        d.polygon([fp(0.3, ly - 0.22), fp(0.7, ly - 0.22), fp(0.7, ly + 0.16), fp(0.3, ly + 0.16)], fill=(35, 35, 38))
        for u in (0.05, 0.77):
            d.polygon([fp(u, ly), fp(u + 0.18, ly), fp(u + 0.18, ly + 0.14), fp(u, ly + 0.14)], fill=(250, 245, 200))
        d.polygon([fp(0, 0.32), fp(1, 0.32), fp(1, 0.4), fp(0, 0.4)], fill=(35, 35, 35))
        _badge(d, *fp(0.5, ly - 0.03), 0.5 * EMBLEM_RADIUS * body.height * v.squash * v.scale, brand)
    else:
        d.polygon([v.px(x_hi - 0.15, ly), v.px(x_hi, ly), v.px(x_hi, ly + 0.14), v.px(x_hi - 0.15, ly + 0.14)],
                  fill=(250, 240, 190))
    _badge(d, *v.px(*_badge_spot(body)), EMBLEM_RADIUS * body.height * v.scale * (v.squash if v.quarter else 1.0), brand)


def render_vehicle(v: Vehicle, rng: np.random.Generator, style: Style) -> Image.Image:
    """A wide crop of a complete vehicle, seen from the side or three-quarter front, either direction.

    The three-quarter view is an oblique extrusion of the side profile: the far side is the profile
    shifted by the vehicle's width, and every edge facing the camera sweeps a face (bonnet, grille,
    windscreen, roof) between the two.
    """
    if not v.complete:
        raise ValueError(f"only a complete vehicle can be drawn, got {v.to_text()!r}")
    body = BODIES[v.type]
    paint = lit(COLOUR_RGB[v.colour], rng)
    view = _view(body, rng)
    img = background(view.w, view.h, style, rng)
    d = ImageDraw.Draw(img)
    if style == "surveillance":
        clutter(d, view.w, view.h, rng, vertical=False)
    pen = _Painter(d, view, dark=shade(paint, 0.45) if sum(paint) > 120 else (90, 90, 95), glass=lit((45, 60, 80), rng, 0.2),
                   lw=max(1, round(view.scale * 0.04)))
    shadow = shade(np.asarray(img.getpixel((view.w // 2, view.h - 1))), 0.6)
    (a, b), (c, e) = view.px(-0.1, 0.15), view.px(body.length + 0.1, -0.05, 1.0)
    d.ellipse((min(a, c), min(b, e), max(a, c), max(b, e)), fill=shadow)
    if body.cargo:
        _cargo(pen, body, paint, rng)
    _side(pen, body, paint, badge_code(v.brand)[0])
    _front(pen, body, v.brand)
    return finish(img, style, rng)
