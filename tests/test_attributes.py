"""Pedestrian flag vectors and vehicle attributes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given

from strategies import pedestrians
from traffic_retrieval.core.attributes import (
    N_FLAGS,
    PEDESTRIAN_BOOLS,
    PEDESTRIAN_FLAGS,
    Pedestrian,
    Vehicle,
    kind_of,
    looks_like_flags,
    parse_flags,
)



def flags(*on: str) -> str:
    return ",".join("1" if name in on else "0" for name in PEDESTRIAN_FLAGS)


def test_flag_order_is_21_distinct_names_and_covers_every_field():
    assert N_FLAGS == len(set(PEDESTRIAN_FLAGS)) == 21
    grouped = ("gender", "age", "orientation", "sleeve")
    assert set(PEDESTRIAN_BOOLS) == {f for f in Pedestrian().names() if f not in grouped}


@given(pedestrians)
def test_flags_round_trip(p):
    field = p.to_flags()
    assert len(field.split(",")) == 21 and set(field.split(",")) <= {"0", "1"}
    assert kind_of(field) == "pedestrian"
    assert Pedestrian.from_flags(field) == p


def test_flags_put_each_attribute_at_its_documented_index():
    p = Pedestrian(gender="female", age=">60", orientation="back", sleeve="long", hat=True, boots=True)
    assert p.to_flags() == flags("age_over_60", "back", "long_sleeve", "hat", "boots")
    side = Pedestrian(orientation="side")
    bits = side.to_flags().split(",")
    assert bits[PEDESTRIAN_FLAGS.index("front")] == bits[PEDESTRIAN_FLAGS.index("back")] == "0"


def test_from_flags_accepts_spaces_around_flags():
    field = flags("male", "age_18_60", "front", "backpack")
    assert Pedestrian.from_flags(field.replace(",", ", ")) == Pedestrian(backpack=True)


@pytest.mark.parametrize(
    "field,defect",
    [
        (flags("male", "age_18_60")[2:], "20 flags"),
        (flags("male", "age_18_60") + ",0", "22 flags"),
        (flags("age_18_60").replace("1", "2"), "expected 0 or 1"),
        (flags("male"), "exactly one age flag"),
        (flags("age_under_18", "age_over_60"), "exactly one age flag"),
        (flags("age_18_60", "front", "back"), "front (4) and back (5)"),
        (flags("age_18_60", "short_sleeve", "long_sleeve"), "short (12) and long (13)"),
    ],
)
def test_from_flags_rejects_malformed_vectors(field, defect):
    with pytest.raises(ValueError, match=re.escape(defect)):
        Pedestrian.from_flags(field)


@pytest.mark.parametrize("text", ["white Audi", "Truck", "Hongyan", "grey Chery Sedan", "Balong Heavy Truck", "1"])
def test_vehicle_text_is_a_vehicle(text):
    assert not looks_like_flags(text)
    assert kind_of(text) == "vehicle"


@pytest.mark.parametrize(
    "field",
    [
        "0,1",  # a vector, but not 21 flags
        flags("age_18_60")[2:],  # 20 flags
        flags("age_18_60") + ",",  # a stray trailing comma
        flags("age_18_60").replace("0,0", "0,,0", 1),  # a missing flag
        flags("age_18_60").replace("1", "2"),  # 0/2-valued
    ],
)
def test_malformed_vector_is_an_error_not_a_vehicle(field):
    assert looks_like_flags(field)
    with pytest.raises(ValueError):
        kind_of(field)


def test_parse_flags_reads_each_bit():
    assert parse_flags(flags("male", "boots")) == [1] + [0] * 19 + [1]


def test_vehicle_text_and_completeness():
    assert Vehicle("grey", "Chery", "Sedan").to_text() == "grey Chery Sedan"
    assert Vehicle("white", "Audi").to_text() == "white Audi"
    assert Vehicle(type="Truck").to_text() == "Truck"
    assert Vehicle(brand="Balong Heavy Truck").to_text() == "Balong Heavy Truck"
    assert Vehicle("grey", "Chery", "Sedan").complete
    assert not Vehicle("white", "Audi").complete
