"""What a traffic participant is: pedestrian flag vectors and vehicle (colour, brand, type).

The challenge writes a pedestrian's attributes as 21 comma-separated 0/1 flags and a vehicle's
as free text ("white Audi", "Truck", "Hongyan"). The challenge does not publish its flag order,
so the project defines one (``PEDESTRIAN_FLAGS``) and documents it here; the synthetic data and
the caption parser both speak it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, Optional

Kind = Literal["vehicle", "pedestrian"]
Gender = Literal["male", "female"]
AgeBand = Literal["<18", "18-60", ">60"]
Orientation = Literal["front", "back", "side"]
Sleeve = Optional[Literal["short", "long"]]

GENDERS: tuple[Gender, ...] = ("male", "female")
AGE_BANDS: tuple[AgeBand, ...] = ("<18", "18-60", ">60")
ORIENTATIONS: tuple[Orientation, ...] = ("front", "back", "side")
SLEEVES: tuple[Sleeve, ...] = (None, "short", "long")

# The project's flag order (index: meaning). Exactly-one groups: age (1-3); orientation (4-5,
# side = neither front nor back, which keeps the vector at the challenge's 21 flags).
PEDESTRIAN_FLAGS: tuple[str, ...] = (
    "male",  # 0: 1 male, 0 female (the challenge's example female has a 0 here)
    "age_under_18",  # 1
    "age_18_60",  # 2
    "age_over_60",  # 3
    "front",  # 4: body facing the camera
    "back",  # 5: back to the camera
    "hat",  # 6
    "glasses",  # 7
    "handbag",  # 8
    "shoulder_bag",  # 9
    "backpack",  # 10
    "holding",  # 11: holding objects in front
    "short_sleeve",  # 12
    "long_sleeve",  # 13
    "upper_stripe",  # 14
    "upper_logo",  # 15
    "upper_plaid",  # 16
    "upper_splice",  # 17
    "long_coat",  # 18
    "skirt_dress",  # 19
    "boots",  # 20
)
N_FLAGS = len(PEDESTRIAN_FLAGS)
assert N_FLAGS == 21

# The boolean attributes of a pedestrian, in flag order.
PEDESTRIAN_BOOLS: tuple[str, ...] = PEDESTRIAN_FLAGS[6:12] + PEDESTRIAN_FLAGS[14:]


@dataclass(frozen=True)
class Pedestrian:
    """A pedestrian's attributes. Captions always state gender, age band and orientation."""

    gender: Gender = "male"
    age: AgeBand = "18-60"
    orientation: Orientation = "front"
    sleeve: Sleeve = None
    hat: bool = False
    glasses: bool = False
    handbag: bool = False
    shoulder_bag: bool = False
    backpack: bool = False
    holding: bool = False
    upper_stripe: bool = False
    upper_logo: bool = False
    upper_plaid: bool = False
    upper_splice: bool = False
    long_coat: bool = False
    skirt_dress: bool = False
    boots: bool = False

    def to_flags(self) -> str:
        """The 21-flag attribute field, e.g. ``0,0,1,0,1,0,...``."""
        on = {
            "male": self.gender == "male",
            "age_under_18": self.age == "<18",
            "age_18_60": self.age == "18-60",
            "age_over_60": self.age == ">60",
            "front": self.orientation == "front",
            "back": self.orientation == "back",
            "short_sleeve": self.sleeve == "short",
            "long_sleeve": self.sleeve == "long",
        }
        on.update({name: getattr(self, name) for name in PEDESTRIAN_BOOLS})
        return ",".join("1" if on[name] else "0" for name in PEDESTRIAN_FLAGS)

    @classmethod
    def from_flags(cls, field: str) -> "Pedestrian":
        """Inverse of :meth:`to_flags`. Raises ValueError on a malformed vector."""
        bits = parse_flags(field)
        flag = dict(zip(PEDESTRIAN_FLAGS, bits))
        ages = [a for a, k in zip(AGE_BANDS, ("age_under_18", "age_18_60", "age_over_60")) if flag[k]]
        if len(ages) != 1:
            raise ValueError(f"exactly one age flag (1-3) must be set, got {len(ages)}")
        if flag["front"] and flag["back"]:
            raise ValueError("front (4) and back (5) flags are both set")
        if flag["short_sleeve"] and flag["long_sleeve"]:
            raise ValueError("short (12) and long (13) sleeve flags are both set")
        return cls(
            gender="male" if flag["male"] else "female",
            age=ages[0],
            orientation="front" if flag["front"] else "back" if flag["back"] else "side",
            sleeve="short" if flag["short_sleeve"] else "long" if flag["long_sleeve"] else None,
            **{name: bool(flag[name]) for name in PEDESTRIAN_BOOLS},
        )

    def names(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Vehicle:
    """A vehicle's attributes; each part may be missing in a (partial) training label."""

    colour: Optional[str] = None
    brand: Optional[str] = None
    type: Optional[str] = None

    def to_text(self) -> str:
        """The attribute field as the challenge writes it: "white Audi", "Truck", "grey Chery Sedan"."""
        return " ".join(p for p in (self.colour, self.brand, self.type) if p)

    @property
    def complete(self) -> bool:
        return None not in (self.colour, self.brand, self.type)


def looks_like_flags(field: str) -> bool:
    """True when the field is written as a comma-separated flag vector (of any length).

    Empty parts count ("0,1,", "0,,1"), so that a stray comma is an error, not a vehicle.
    """
    parts = [p.strip() for p in field.split(",")]
    return len(parts) > 1 and any(parts) and all(p.isdigit() or not p for p in parts)


def parse_flags(field: str) -> list[int]:
    """The 0/1 flags of a pedestrian attribute field; ValueError names the defect."""
    parts = [p.strip() for p in field.split(",")]
    if len(parts) != N_FLAGS:
        raise ValueError(f"pedestrian attribute vector has {len(parts)} flags, expected {N_FLAGS}")
    bad = [i for i, p in enumerate(parts) if p not in ("0", "1")]
    if bad:
        raise ValueError(f"pedestrian flag {bad[0]} is {parts[bad[0]]!r}, expected 0 or 1")
    return [int(p) for p in parts]


def kind_of(field: str) -> Kind:
    """Pedestrian when the attribute field is a flag vector, else vehicle.

    A field that looks like a vector but is malformed raises ValueError, so that a typo in
    a pedestrian label never silently turns it into a vehicle.
    """
    if looks_like_flags(field):
        parse_flags(field)
        return "pedestrian"
    return "vehicle"
