"""Attributes as categorical groups: what an attribute head predicts and what a query asks for.

A traffic participant is described by groups of exclusive values: its kind; a vehicle's colour,
type and brand (the vocabulary's words); a pedestrian's gender, age band, orientation, sleeve
length and thirteen yes/no attributes. A training label fills the groups it states (a partial
vehicle label leaves the others missing, ``MISSING``) and a query names the values it asks for,
read by the same caption parsers that check the labels. Pure functions, no model here: the heads
that predict these groups live in retrieval/fusion.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from .attributes import AGE_BANDS, GENDERS, ORIENTATIONS, PEDESTRIAN_BOOLS, Kind, Pedestrian, Vehicle
from .captions import parse_pedestrian_caption, parse_vehicle_caption
from .labels import Label
from .vocab import Vocabulary

MISSING = -1  # a group a label does not state, or a query does not ask for
KINDS: tuple[Kind, ...] = ("vehicle", "pedestrian")
SLEEVE_VALUES = ("none", "short", "long")  # Pedestrian.sleeve None, "short", "long"


@dataclass(frozen=True)
class Group:
    """One categorical attribute and its values; ``kind`` None: every participant has it."""

    name: str
    values: tuple[str, ...]
    kind: Optional[Kind] = None


def attribute_groups(vocab: Vocabulary) -> tuple[Group, ...]:
    """The groups of a vocabulary, in a fixed order: kind, then the vehicle's, then the pedestrian's."""
    return (
        Group("kind", KINDS),
        Group("colour", vocab.colours, "vehicle"),
        Group("type", vocab.types, "vehicle"),
        Group("brand", vocab.brands, "vehicle"),
        Group("gender", GENDERS, "pedestrian"),
        Group("age", AGE_BANDS, "pedestrian"),
        Group("orientation", ORIENTATIONS, "pedestrian"),
        Group("sleeve", SLEEVE_VALUES, "pedestrian"),
        *(Group(name, ("no", "yes"), "pedestrian") for name in PEDESTRIAN_BOOLS),
    )


def _index(values: tuple[str, ...], value: Optional[str]) -> int:
    return values.index(value) if value is not None and value in values else MISSING


def encode_subject(subject: Vehicle | Pedestrian, groups: Sequence[Group]) -> list[int]:
    """The value index of each group for a participant (MISSING where it says nothing)."""
    kind: Kind = "vehicle" if isinstance(subject, Vehicle) else "pedestrian"
    out = []
    for g in groups:
        if g.name == "kind":
            out.append(KINDS.index(kind))
        elif g.kind != kind:
            out.append(MISSING)
        elif kind == "vehicle":
            out.append(_index(g.values, getattr(subject, g.name)))
        elif g.name == "sleeve":
            out.append(SLEEVE_VALUES.index(subject.sleeve or "none"))
        elif g.values == ("no", "yes"):
            out.append(int(getattr(subject, g.name)))
        else:
            out.append(_index(g.values, getattr(subject, g.name)))
    return out


def label_targets(label: Label, vocab: Vocabulary, groups: Sequence[Group]) -> list[int]:
    """What a training label states, group by group: a pedestrian's flags say everything, a
    vehicle's attribute field only the parts it names ("white Audi": colour and brand)."""
    if label.kind == "pedestrian":
        return encode_subject(Pedestrian.from_flags(label.attribute), groups)
    vehicle = vocab.parse(label.attribute)
    return encode_subject(vehicle if vehicle is not None else Vehicle(), groups)


def query_targets(query: str, kind: Kind, vocab: Vocabulary, groups: Sequence[Group]) -> list[int]:
    """What a query asks for: its kind, and the attributes its text states when the caption parser
    reads it ("This is a grey Chery Sedan." -> colour, brand, type). A text the parser cannot read
    asks for its kind alone, so fusion never guesses at words it does not know."""
    targets = [MISSING] * len(groups)
    subject: Vehicle | Pedestrian | None = None
    if kind == "vehicle":
        parsed = parse_vehicle_caption(query, vocab)
        subject = parsed[1] if parsed else None
    else:
        try:
            subject = parse_pedestrian_caption(query)
        except ValueError:
            subject = None
    if subject is not None:
        targets = encode_subject(subject, groups)
    targets[[g.name for g in groups].index("kind")] = KINDS.index(kind)
    return targets
