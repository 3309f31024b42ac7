"""The vehicle vocabulary (colours, types, brands), extracted from training labels.

Training labels are partial: "white Audi" (colour + brand), "Truck" (type alone) or "Hongyan"
(brand alone). Colours are the lowercase leading words; brands are what follows a colour;
types are the labels that stand alone and never follow a colour. A brand that is only ever
seen alone cannot be told from a type by the three-field labels, so the completed fourth field
of an augmented label (``"red Hongyan Truck"``: the last word is the type) is used where present.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Optional

from .attributes import Vehicle
from .fileio import InputError, atomic_write_text, require_file

VOCABULARY_FILE = 'a vocabulary ({"Colors": [...], "Types": [...], "Brands": [...]}, as car_attribute.json)'


@dataclass(frozen=True)
class Vocabulary:
    colours: tuple[str, ...]
    types: tuple[str, ...]
    brands: tuple[str, ...]

    def to_json(self) -> str:
        """The challenge's ``car_attribute.json`` layout."""
        data = {"Colors": list(self.colours), "Types": list(self.types), "Brands": list(self.brands)}
        return json.dumps(data) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Vocabulary":
        data = json.loads(text)
        return cls(tuple(data["Colors"]), tuple(data["Types"]), tuple(data["Brands"]))

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        text = require_file(path, VOCABULARY_FILE).read_text(encoding="utf-8-sig")
        try:
            return cls.from_json(text)
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(path, None, f"not {VOCABULARY_FILE}: {e!r}") from None

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_json())

    def merged(self, other: "Vocabulary") -> "Vocabulary":
        """This vocabulary with the words of ``other`` it lacks appended (order kept)."""
        def union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
            return a + tuple(w for w in b if w not in a)

        return Vocabulary(union(self.colours, other.colours), union(self.types, other.types),
                          union(self.brands, other.brands))

    def parse(self, text: str) -> Optional[Vehicle]:
        """Read "grey Chery Sedan", "white Audi", "Truck" into a Vehicle; None if not one.

        Brands are matched longest first so that "Balong Heavy Truck" is a brand, not a type.
        """
        words = text.split()
        colour = words.pop(0) if words and words[0] in self.colours else None
        rest = " ".join(words)
        brand = vtype = None
        for b in sorted(self.brands, key=len, reverse=True):
            if rest == b or rest.startswith(b + " "):
                brand, rest = b, rest[len(b):].strip()
                break
        if rest in self.types:
            vtype, rest = rest, ""
        if rest or (colour, brand, vtype) == (None, None, None):
            return None
        return Vehicle(colour, brand, vtype)


def extract_vocabulary(attributes: Iterable[str], completed: Iterable[Optional[str]] = ()) -> Vocabulary:
    """Vocabulary of vehicle attribute fields (and, optionally, their completed forms)."""
    colours: set[str] = set()
    brands: set[str] = set()
    alone: set[str] = set()
    for text in attributes:
        words = text.split()
        if not words:
            continue
        if words[0].islower():
            colours.add(words[0])
            if len(words) > 1:
                brands.add(" ".join(words[1:]))
        else:
            alone.add(" ".join(words))
    known_types: set[str] = set()
    for text in completed:
        words = (text or "").split()
        if len(words) >= 2:
            known_types.add(words[-1])
    if known_types:
        # A lone label that is not a type is a brand seen alone ("Hongyan", "Balong Heavy Truck").
        brands |= alone - known_types
        types = alone & known_types
    else:
        types = alone - brands
    return Vocabulary(tuple(sorted(colours)), tuple(sorted(types)), tuple(sorted(brands)))


@functools.lru_cache(maxsize=None)
def packaged_vocabulary() -> Vocabulary:
    """The real challenge's vocabulary (11 colours, 6 types, 65 brands), shipped as package data."""
    return Vocabulary.from_json(resources.files(__package__).joinpath("data/car_attribute.json").read_text("utf-8"))
