"""Pedestrians: a tall crop of one person facing the camera, turned away, or in profile. Every flag
of the 21 is drawn where it can be seen: gender by hair and build, age by size, posture and hair
colour, orientation by face, back of the head or profile, then hat, glasses, bags, a held box,
sleeve length, torso pattern, long coat, skirt or dress and boots.

``render_pedestrian`` lays out the crop, then draws the figure back to front, one function a body
part; each takes its random numbers in a fixed order, so a seed always gives the same image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..core.attributes import Pedestrian
from .style import RGB, Style, background, clutter, finish, lit, shade

PEDESTRIAN_HEIGHT_PX = (96, 200)
PEDESTRIAN_ASPECT = (0.35, 0.6)

SKIN: tuple[RGB, ...] = ((245, 205, 170), (225, 180, 140), (190, 140, 100), (140, 95, 65))
HAIR: tuple[RGB, ...] = ((25, 20, 18), (60, 40, 25), (100, 70, 40))
GREY_HAIR: RGB = (205, 205, 210)
CLOTH: tuple[RGB, ...] = (
    (30, 30, 35), (230, 230, 230), (200, 40, 40), (40, 70, 170), (50, 130, 70), (230, 200, 60), (120, 120, 125),
    (150, 90, 50), (90, 40, 120), (235, 130, 160), (40, 160, 180), (240, 140, 40),
)
BAGS: tuple[RGB, ...] = ((60, 35, 20), (20, 20, 20), (160, 30, 40), (200, 170, 120))
HATS: tuple[RGB, ...] = ((200, 30, 30), (30, 30, 30), (240, 240, 240), (40, 80, 180), (230, 190, 40))
BOOT, SHOE, BOX, GLASSES = (60, 40, 25), (30, 30, 30), (190, 145, 90), (10, 10, 10)


def _pick(rng: np.random.Generator, options: Sequence, avoid: Sequence = ()) -> RGB:
    choices = [o for o in options if o not in avoid]
    return choices[int(rng.integers(len(choices)))]


@dataclass
class _Pen:
    """Draws in figure coordinates: fractions of the figure height, x rightwards (forwards in profile)."""

    d: ImageDraw.ImageDraw
    cx: float
    top: float
    fig: float  # figure height in pixels
    d_x: float  # -1 or 1: which way a profile faces

    def P(self, x: float, y: float) -> tuple[float, float]:
        return self.cx + self.d_x * x * self.fig, self.top + y * self.fig

    def poly(self, points, fill) -> None:
        self.d.polygon([self.P(x, y) for x, y in points], fill=fill)

    def oval(self, x0, y0, x1, y1, fill) -> None:
        (a, b), (c, e) = self.P(x0, y0), self.P(x1, y1)
        self.d.ellipse((min(a, c), min(b, e), max(a, c), max(b, e)), fill=fill)

    def bar(self, x0, y0, x1, y1, fill) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill)

    def line(self, a, b, fill, width: float) -> None:
        """A line between figure points, ``width`` a fraction of the figure height (at least 1 px)."""
        self.d.line([self.P(*a), self.P(*b)], fill=fill, width=max(1, round(self.fig * width)))


@dataclass(frozen=True)
class _Palette:
    skin: RGB
    hair: RGB
    upper: RGB
    lower: RGB
    accent: RGB  # patterns contrast with upper and lower
    coat: RGB
    bag: RGB


def _palette(p: Pedestrian, rng: np.random.Generator) -> _Palette:
    skin = _pick(rng, SKIN)
    hair = GREY_HAIR if p.age == ">60" else _pick(rng, HAIR)
    upper = _pick(rng, CLOTH)
    lower = _pick(rng, CLOTH, avoid=[upper])
    accent = _pick(rng, CLOTH, avoid=[upper, lower])
    upper, lower = lit(upper, rng, 0.08), lit(lower, rng, 0.08)
    coat = lit(_pick(rng, CLOTH[:2] + CLOTH[6:8]), rng, 0.08)
    return _Palette(skin, hair, upper, lower, accent, coat, _pick(rng, BAGS))


@dataclass(frozen=True)
class _Build:
    """Proportions: children have big heads and short bodies; elders stoop (head and shoulders
    forward in profile, lowered otherwise)."""

    side: bool
    head: float
    hw: float  # half the head's width
    shoulder_y: float
    hip_y: float
    sw: float  # half the shoulders' width
    hipw: float
    stoop_x: float
    head_y: float
    arm_w: float = 0.04
    knee_y: float = 0.76
    coat_len: float = 0.82

    @classmethod
    def of(cls, p: Pedestrian) -> "_Build":
        child, side = p.age == "<18", p.orientation == "side"
        head = 0.18 if child else 0.13
        lean = 0.05 if p.age == ">60" else 0.0
        return cls(
            side=side, head=head, hw=head * 0.4, shoulder_y=head + 0.03, hip_y=0.56 if child else 0.52,
            sw=(0.085 if child else 0.12 if p.gender == "male" else 0.1) * (0.55 if side else 1.0),
            hipw=(0.07 if child else 0.085 if p.gender == "male" else 0.095) * (0.7 if side else 1.0),
            stoop_x=lean if side else 0.0, head_y=lean * 0.4 if not side else lean * 0.3,
        )


def _behind(pen: _Pen, p: Pedestrian, b: _Build, c: _Palette) -> None:
    """What the body hides in part: a backpack in profile, long hair framing a face, a box held in front."""
    if p.backpack and p.orientation == "side":
        pen.bar(-b.sw - 0.09, b.shoulder_y + 0.02, -b.sw + 0.01, b.hip_y - 0.06, c.bag)
    if p.gender == "female" and p.orientation == "front":
        pen.bar(-b.hw * 1.25, b.head_y + b.head * 0.3, b.hw * 1.25, b.shoulder_y + 0.09, c.hair)
    if p.holding and p.orientation == "back":  # shows at both sides
        pen.bar(-b.sw - 0.04, b.hip_y - 0.14, b.sw + 0.04, b.hip_y - 0.02, BOX)


def _legs(pen: _Pen, p: Pedestrian, b: _Build, c: _Palette, rng: np.random.Generator) -> None:
    """Trousers, or skin under a skirt; boots or shoes; then the skirt."""
    leg = c.lower if not p.skirt_dress else c.skin
    if b.side:
        stride = rng.uniform(0.06, 0.12)
        for sgn in (-1, 1):
            foot = sgn * stride
            pen.poly([(-0.035, b.hip_y), (0.035, b.hip_y), (foot + 0.03, 0.97), (foot - 0.03, 0.97)], leg)
            if p.boots:
                pen.poly([(foot - 0.035, 0.86), (foot + 0.035, 0.86), (foot + 0.05, 1.0), (foot - 0.035, 1.0)], BOOT)
            else:
                pen.poly([(foot - 0.03, 0.965), (foot + 0.06, 0.965), (foot + 0.06, 1.0), (foot - 0.03, 1.0)], SHOE)
    else:
        gap = 0.008
        for sgn in (-1, 1):
            pen.poly([(sgn * gap, b.hip_y), (sgn * b.hipw, b.hip_y), (sgn * 0.07, 0.97), (sgn * gap, 0.97)], leg)
            if p.boots:
                pen.bar(sgn * gap, 0.86, sgn * 0.08, 1.0, BOOT)
            else:
                pen.bar(sgn * gap, 0.965, sgn * 0.075, 1.0, SHOE)
    if p.skirt_dress:
        pen.poly([(-b.hipw, b.hip_y - 0.03), (b.hipw, b.hip_y - 0.03), (b.hipw + 0.06, b.knee_y),
                  (-b.hipw - 0.06, b.knee_y)], c.lower)


def _torso(pen: _Pen, p: Pedestrian, b: _Build, c: _Palette) -> None:
    """The shirt and its pattern, or a long coat reaching the knees (which hides the pattern)."""
    torso = [(-b.sw + b.stoop_x, b.shoulder_y), (b.sw + b.stoop_x, b.shoulder_y), (b.hipw, b.hip_y), (-b.hipw, b.hip_y)]
    if p.long_coat:
        pen.poly([(-b.sw + b.stoop_x, b.shoulder_y), (b.sw + b.stoop_x, b.shoulder_y), (b.hipw + 0.05, b.coat_len),
                  (-b.hipw - 0.05, b.coat_len)], c.coat)
        if not b.side:
            pen.line((0, b.shoulder_y + 0.04), (0, b.coat_len), shade(c.coat, 0.6), 0.006)
        return
    pen.poly(torso, c.upper)
    top, bottom = b.shoulder_y + 0.01, b.hip_y - 0.01
    x_l, x_r = min(x for x, _ in torso), max(x for x, _ in torso)
    thin = 0.008
    if p.upper_stripe:
        for y in np.linspace(top + 0.04, bottom - 0.02, 5):
            pen.d.line([pen.P(x_l + 0.01, y), pen.P(x_r - 0.01, y)], fill=c.accent, width=max(2, round(pen.fig * 0.015)))
    if p.upper_plaid:
        for y in np.linspace(top + 0.03, bottom - 0.02, 5):
            pen.line((x_l + 0.01, y), (x_r - 0.01, y), c.accent, thin)
        for x in np.linspace(x_l + 0.02, x_r - 0.02, 5 if not b.side else 3):
            pen.line((x, top), (x, bottom), c.accent, thin)
    if p.upper_splice:  # two big colour blocks
        pen.poly([(0 + b.stoop_x / 2, b.shoulder_y), (b.sw + b.stoop_x, b.shoulder_y), (b.hipw, b.hip_y), (0, b.hip_y)],
                 c.accent)
        pen.bar(x_l, top + 0.12, x_r, top + 0.15, shade(c.accent, 0.6))
    if p.upper_logo and p.orientation != "back":
        x, y = (0.0 if not b.side else 0.01), b.shoulder_y + 0.1
        pen.oval(x - 0.035, y - 0.035, x + 0.035, y + 0.035, shade(c.accent, 1.3))
        pen.oval(x - 0.018, y - 0.018, x + 0.018, y + 0.018, shade(c.accent, 0.5))
    elif p.upper_logo:
        pen.bar(-0.04, b.shoulder_y + 0.05, 0.04, b.shoulder_y + 0.13, shade(c.accent, 1.3))


def _arms(pen: _Pen, p: Pedestrian, b: _Build, c: _Palette, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Arms with sleeve length shown as cloth vs skin; returns the hands' positions."""
    sleeve_colour = c.coat if p.long_coat else c.upper
    sleeve_end = {"long": 1.0, "short": 0.4, None: 0.0}[p.sleeve] if not p.long_coat else 1.0
    arm_len = b.hip_y - b.shoulder_y + 0.07
    aw = b.arm_w
    arms = [(0.02 + b.stoop_x, rng.uniform(-0.05, 0.05))] if b.side else [(-b.sw - aw / 2, -0.02), (b.sw + aw / 2, 0.02)]
    hands = []
    for ax, swing in arms:
        outward = np.sign(ax) * 0.012 if not b.side else swing
        if p.holding and p.orientation != "back":
            outward = 0.03 if b.side else -np.sign(ax) * 0.02
        ex, ey = ax + outward * 2, b.shoulder_y + arm_len * (0.8 if p.holding else 1.0)
        s_x, s_y = ax + (ex - ax) * sleeve_end, b.shoulder_y + (ey - b.shoulder_y) * sleeve_end
        if sleeve_end < 1.0:
            pen.poly([(ax - aw / 2, b.shoulder_y), (ax + aw / 2, b.shoulder_y), (ex + aw / 2, ey), (ex - aw / 2, ey)], c.skin)
        if sleeve_end > 0:
            pen.poly([(ax - aw / 2, b.shoulder_y), (ax + aw / 2, b.shoulder_y), (s_x + aw / 2, s_y), (s_x - aw / 2, s_y)],
                     sleeve_colour)
        pen.oval(ex - aw * 0.6, ey - 0.005, ex + aw * 0.6, ey + aw, c.skin)
        hands.append((ex, ey))
    return hands


def _carried(pen: _Pen, p: Pedestrian, b: _Build, c: _Palette, hands: list[tuple[float, float]]) -> None:
    """Shoulder bag, backpack, handbag, a held box, an elder's walking stick."""
    if p.shoulder_bag:
        sx0 = b.sw * 0.8 + b.stoop_x if not b.side else b.stoop_x
        bx = -b.hipw - 0.03 if not b.side else -0.05
        pen.d.line([pen.P(sx0, b.shoulder_y), pen.P(bx + 0.02, b.hip_y - 0.02)], fill=shade(c.bag, 0.8),
                   width=max(2, round(pen.fig * 0.012)))
        pen.bar(bx - 0.05, b.hip_y - 0.05, bx + 0.04, b.hip_y + 0.05, c.bag)
    if p.backpack and p.orientation == "back":
        pen.bar(-b.sw * 0.85, b.shoulder_y + 0.02, b.sw * 0.85, b.hip_y - 0.05, c.bag)
        pen.bar(-b.sw * 0.6, b.hip_y - 0.17, b.sw * 0.6, b.hip_y - 0.08, shade(c.bag, 1.25))
    elif p.backpack and p.orientation == "front":
        for x in (-b.sw * 0.55, b.sw * 0.55):
            pen.bar(x - 0.015, b.shoulder_y, x + 0.015, b.hip_y - 0.1, c.bag)
    if p.handbag:
        hx, hy = hands[-1]
        pen.line((hx, hy), (hx + 0.015, hy + 0.04), (40, 40, 40), 0.006)
        pen.poly([(hx - 0.03, hy + 0.04), (hx + 0.05, hy + 0.04), (hx + 0.06, hy + 0.11), (hx - 0.04, hy + 0.11)], c.bag)
    if p.holding and p.orientation != "back":
        box_x = (0.06 + b.stoop_x, 0.17 + b.stoop_x) if b.side else (-b.sw * 0.85, b.sw * 0.85)
        pen.bar(box_x[0], b.hip_y - 0.14, box_x[1], b.hip_y - 0.01, BOX)
        pen.line((box_x[0], b.hip_y - 0.08), (box_x[1], b.hip_y - 0.08), (140, 100, 60), 0.006)
    if p.age == ">60":
        hx, hy = hands[0]
        pen.d.line([pen.P(hx, hy), pen.P(hx + 0.02, 1.0)], fill=(90, 60, 30), width=max(2, round(pen.fig * 0.01)))


def _head(pen: _Pen, p: Pedestrian, b: _Build, c: _Palette, rng: np.random.Generator) -> None:
    """Neck, then a face, the back of the head or a profile, with hair (long for women), glasses and a hat."""
    neck_x, hw, head = b.stoop_x, b.hw, b.head
    pen.bar(neck_x - 0.02, b.head_y + head * 0.8, neck_x + 0.02, b.shoulder_y + 0.01, c.skin)
    hx0, hx1, hy0, hy1 = neck_x - hw, neck_x + hw, b.head_y, b.head_y + head
    long_hair = p.gender == "female"
    eye = (30, 25, 25)
    if p.orientation == "back":
        pen.oval(hx0, hy0, hx1, hy1, c.hair)
        if long_hair:
            pen.poly([(hx0, hy0 + head * 0.5), (hx1, hy0 + head * 0.5), (hx1 + 0.01, b.shoulder_y + 0.1),
                      (hx0 - 0.01, b.shoulder_y + 0.1)], c.hair)
    elif p.orientation == "front":
        pen.oval(hx0, hy0, hx1, hy1, c.skin)
        pen.oval(hx0 - 0.004, hy0 - 0.004, hx1 + 0.004, hy0 + head * 0.45, c.hair)
        pen.bar(hx0 + hw * 0.2, hy0 + head * 0.3, hx1 - hw * 0.2, hy0 + head * 0.4, c.skin)
        ey = hy0 + head * 0.5
        for ex in (neck_x - hw * 0.42, neck_x + hw * 0.42):
            pen.oval(ex - hw * 0.12, ey - hw * 0.1, ex + hw * 0.12, ey + hw * 0.1, eye)
        if p.glasses:
            for ex in (neck_x - hw * 0.42, neck_x + hw * 0.42):
                (a, y0), (x1, y1) = pen.P(ex - hw * 0.33, ey - hw * 0.25), pen.P(ex + hw * 0.33, ey + hw * 0.25)
                pen.d.rectangle((min(a, x1), y0, max(a, x1), y1), outline=GLASSES, width=max(1, round(pen.fig * 0.007)))
            pen.line((neck_x - hw * 0.1, ey), (neck_x + hw * 0.1, ey), GLASSES, 0.005)
        pen.d.line([pen.P(neck_x - hw * 0.25, hy0 + head * 0.78), pen.P(neck_x + hw * 0.25, hy0 + head * 0.78)],
                   fill=(150, 60, 60))
    else:  # profile, facing +x
        pen.oval(hx0, hy0, hx1, hy1, c.skin)
        pen.poly([(hx1 - 0.005, hy0 + head * 0.45), (hx1 + 0.018, hy0 + head * 0.6), (hx1 - 0.005, hy0 + head * 0.65)],
                 c.skin)
        pen.oval(hx0 - 0.004, hy0 - 0.004, hx1 + 0.002, hy0 + head * 0.42, c.hair)
        pen.oval(hx0 - 0.004, hy0, neck_x, hy1 - head * 0.15, c.hair)
        if long_hair:
            pen.bar(hx0 - 0.004, hy0 + head * 0.3, neck_x - hw * 0.2, b.shoulder_y + 0.08, c.hair)
        ey = hy0 + head * 0.5
        pen.oval(hx1 - hw * 0.45, ey - hw * 0.1, hx1 - hw * 0.25, ey + hw * 0.1, eye)
        if p.glasses:
            pen.d.line([pen.P(hx1 - hw * 0.55, ey), pen.P(hx1 + 0.004, ey)], fill=GLASSES,
                       width=max(2, round(pen.fig * 0.009)))
            pen.line((hx1 - hw * 0.55, ey), (neck_x - hw * 0.2, ey - 0.005), GLASSES, 0.005)
    if p.hat:
        hat = _pick(rng, HATS, avoid=[c.hair])
        pen.oval(hx0 - 0.01, hy0 - head * 0.2, hx1 + 0.01, hy0 + head * 0.55, hat)
        brim = (hx0 - 0.004, hx1 + 0.035) if b.side else (hx0 - 0.02, hx1 + 0.02)
        pen.bar(brim[0], hy0 + head * 0.22, brim[1], hy0 + head * 0.32, shade(hat, 0.75))


def render_pedestrian(p: Pedestrian, rng: np.random.Generator, style: Style) -> Image.Image:
    """A tall crop of one pedestrian facing the camera, turned away, or in profile."""
    child, old = p.age == "<18", p.age == ">60"
    h = int(rng.integers(*PEDESTRIAN_HEIGHT_PX, endpoint=True) * (0.7 if child else 1.0))
    w = min(max(round(h * rng.uniform(*PEDESTRIAN_ASPECT)), math.ceil(h * PEDESTRIAN_ASPECT[0])),
            math.floor(h * PEDESTRIAN_ASPECT[1]))
    fig = h * rng.uniform(0.84, 0.95) * (0.97 if old else 1.0)
    cx = w / 2 + rng.uniform(-0.06, 0.06) * w
    top = (h - fig) * rng.uniform(0.3, 0.8)
    d_x = -1.0 if rng.random() < 0.5 else 1.0
    img = background(w, h, style, rng)
    pen = _Pen(ImageDraw.Draw(img), cx, top, fig, d_x)
    if style == "surveillance":
        clutter(pen.d, w, h, rng, vertical=True)
    colours, build = _palette(p, rng), _Build.of(p)
    _behind(pen, p, build, colours)
    _legs(pen, p, build, colours, rng)
    _torso(pen, p, build, colours)
    hands = _arms(pen, p, build, colours, rng)
    _carried(pen, p, build, colours, hands)
    _head(pen, p, build, colours, rng)
    return finish(img, style, rng)
