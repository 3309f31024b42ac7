"""A contact sheet of the synthetic data: vehicles cycling through the types and colours and
pedestrians each showing off an attribute or two, each drawn in web style beside surveillance style."""

from __future__ import annotations

import io
import random
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..core.captions import pedestrian_caption, vehicle_caption
from ..core.fileio import atomic_write_bytes
from ..core.vocab import packaged_vocabulary
from .pedestrians import render_pedestrian
from .plan import draw_pedestrian, draw_vehicle
from .style import Style
from .vehicles import render_vehicle

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
    vocab = packaged_vocabulary()
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
