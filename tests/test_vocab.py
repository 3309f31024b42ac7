"""The vehicle vocabulary: extraction from labels, JSON layout, parsing of attribute text."""

from __future__ import annotations

import json

import pytest

from traffic_retrieval.core.attributes import Vehicle
from traffic_retrieval.core.labels import read_labels
from traffic_retrieval.core.vocab import Vocabulary, extract_vocabulary

VOCAB = Vocabulary(
    colours=("black", "grey", "white"),
    types=("Minivan", "Sedan", "Truck"),
    brands=("Audi", "Balong Heavy Truck", "Chery", "Golden Dragon", "Mini"),
)


def test_real_labels_give_the_challenge_vocabulary(shared_data):
    labels = read_labels(shared_data / "real_vehicle_labels_train.txt")
    vocab = extract_vocabulary([l.attribute for l in labels], [l.completed for l in labels])
    reference = Vocabulary.load(shared_data / "car_attribute.json")
    assert (len(vocab.colours), len(vocab.types), len(vocab.brands)) == (11, 6, 65)
    assert vocab == reference  # same names, same order
    assert json.loads(vocab.to_json()) == json.loads((shared_data / "car_attribute.json").read_text(encoding="utf-8"))


def test_real_vocabulary_parses_every_completed_label(shared_data):
    vocab = Vocabulary.load(shared_data / "car_attribute.json")
    labels = read_labels(shared_data / "real_vehicle_labels_train.txt")
    for text in {l.completed for l in labels}:
        vehicle = vocab.parse(text)
        assert vehicle is not None and vehicle.complete and vehicle.to_text() == text, text


def test_extraction_without_completed_field():
    attributes = ["white Audi", "grey Golden Dragon", "Truck", "Sedan", "Golden Dragon", "white Audi", "black Chery"]
    vocab = extract_vocabulary(attributes)
    assert vocab == Vocabulary(("black", "grey", "white"), ("Sedan", "Truck"), ("Audi", "Chery", "Golden Dragon"))
    # A 3-field label file has no completed field: a column of None behaves as none given.
    assert extract_vocabulary(attributes, [None] * len(attributes)) == vocab


def test_completed_field_tells_a_lone_brand_from_a_type():
    attributes = ["white Audi", "Hongyan", "Balong Heavy Truck", "Truck"]
    completed = ["white Audi Sedan", "red Hongyan Truck", "black Balong Heavy Truck Truck", "grey Chery Truck"]
    # Without it, a brand only ever seen alone is taken for a type.
    assert extract_vocabulary(attributes) == Vocabulary(
        ("white",), ("Balong Heavy Truck", "Hongyan", "Truck"), ("Audi",)
    )
    assert extract_vocabulary(attributes, completed) == Vocabulary(
        ("white",), ("Truck",), ("Audi", "Balong Heavy Truck", "Hongyan")
    )


def test_json_round_trip(tmp_path):
    path = tmp_path / "car_attribute.json"
    VOCAB.save(path)
    assert Vocabulary.load(path) == VOCAB
    assert list(json.loads(path.read_text())) == ["Colors", "Types", "Brands"]
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert Vocabulary.load(path) == VOCAB


@pytest.mark.parametrize(
    "text,expected",
    [
        ("grey Chery Sedan", Vehicle("grey", "Chery", "Sedan")),
        ("white Audi", Vehicle("white", "Audi", None)),
        ("Truck", Vehicle(None, None, "Truck")),
        ("Balong Heavy Truck", Vehicle(None, "Balong Heavy Truck", None)),
        ("black Balong Heavy Truck Truck", Vehicle("black", "Balong Heavy Truck", "Truck")),
        ("white Golden Dragon", Vehicle("white", "Golden Dragon", None)),
        ("Minivan", Vehicle(None, None, "Minivan")),
        ("black Mini Minivan", Vehicle("black", "Mini", "Minivan")),
        ("  grey   Chery  Sedan ", Vehicle("grey", "Chery", "Sedan")),
    ],
)
def test_parse(text, expected):
    assert VOCAB.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "purple Audi", "Audi Sedan wheels", "Golden", "Sedan Audi", "Minivanish", "white Audi Truck Truck", "a man"],
)
def test_parse_junk_is_none(text):
    assert VOCAB.parse(text) is None
