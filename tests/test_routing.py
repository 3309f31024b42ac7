"""Query routing (vehicle | pedestrian), order-preserving split and merge, prompt enhancement."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from traffic_retrieval.core.labels import read_labels, read_queries
from traffic_retrieval.core.routing import DEFAULT_VEHICLE_PROMPT, enhance, merge_by_index, route, split_by_kind
from traffic_retrieval.core.vocab import Vocabulary

VOCAB = Vocabulary(
    colours=("grey", "white"),
    types=("Bus", "Minivan", "Sedan", "Truck"),
    brands=("Audi", "Balong Heavy Truck", "Chery", "China-Moto", "Mini", "Style"),
)

CASES = {
    "This is a grey Chery Sedan.": "vehicle",
    "A white Audi": "vehicle",
    "Truck": "vehicle",
    "A black Mini.": "vehicle",
    "The Minivan is parked": "vehicle",
    "A grey China-Moto with a roof rack": "vehicle",
    "An Audi's rear, seen from above": "vehicle",
    "A male pedestrian under 18 years old, standing sideways with a backpack.": "pedestrian",
    "A woman who is between 18 and 60 years old, with her back to the camera. She wears a hat and boots.": "pedestrian",
    "A female pedestrian in a stylish mini skirt and a long coat.": "pedestrian",  # brands are case-sensitive
    "Minivanish shape": "pedestrian",  # contains "Mini" and "Minivan", but names neither
    "A Mini-skirt": "pedestrian",  # a hyphenated word is one word
    "An Audiophile with headphones": "pedestrian",
    "Moto": "pedestrian",  # part of a brand is not the brand
    "": "pedestrian",
}


def test_route_examples():
    assert route(list(CASES), VOCAB) == list(CASES.values())


def test_empty_vocabulary_routes_everything_to_pedestrian():
    assert route(["A man. He walks.", "", "This is a grey Chery Sedan."], Vocabulary((), (), ())) == ["pedestrian"] * 3


def test_real_captions_route_to_their_kind(shared_data):
    vocab = Vocabulary.load(shared_data / "car_attribute.json")
    pedestrian = read_queries(shared_data / "real_pedestrian_captions.txt")
    vehicle = [l.caption for l in read_labels(shared_data / "real_vehicle_labels_train.txt")]
    assert pedestrian and vehicle
    expected = ["pedestrian"] * len(pedestrian) + ["vehicle"] * len(vehicle)
    kinds = route(pedestrian + vehicle, vocab)
    wrong = [q for q, kind, want in zip(pedestrian + vehicle, kinds, expected) if kind != want]
    assert not wrong, wrong[:5]


@given(st.lists(st.sampled_from(["vehicle", "pedestrian"]), max_size=30))
def test_split_then_merge_restores_the_order(kinds):
    split = split_by_kind(kinds)
    assert sorted(split["vehicle"] + split["pedestrian"]) == list(range(len(kinds)))
    assert all(kinds[i] == kind for kind, indices in split.items() for i in indices)
    assert all(indices == sorted(indices) for indices in split.values())
    # Each kind's results come back per kind; merging puts every one at its query's index.
    parts = {kind: (indices, [(kind, i) for i in indices]) for kind, indices in split.items()}
    assert merge_by_index(parts, len(kinds)) == [(k, i) for i, k in enumerate(kinds)]


def test_merge_rejects_missing_or_mismatched_results():
    with pytest.raises(ValueError, match="index 1"):
        merge_by_index({"vehicle": ([0], ["a"]), "pedestrian": ([2], ["c"])}, 3)
    with pytest.raises(ValueError, match="one result per index"):
        merge_by_index({"vehicle": ([0, 1], ["a"])}, 2)


@pytest.mark.parametrize(
    "query,kind,expected",
    [
        ("This is a grey Chery Sedan.", "vehicle", "This is a grey Chery Sedan" + DEFAULT_VEHICLE_PROMPT),
        ("A white Audi", "vehicle", "A white Audi" + DEFAULT_VEHICLE_PROMPT),
        ("A white Audi. ", "vehicle", "A white Audi" + DEFAULT_VEHICLE_PROMPT),
        ("A man with a hat.", "pedestrian", "A man with a hat."),
    ],
)
def test_enhance_appends_the_prompt_to_vehicle_queries_only(query, kind, expected):
    assert enhance(query, kind) == expected


def test_enhance_with_another_or_no_prompt():
    assert enhance("A white Audi.", "vehicle", " at night") == "A white Audi at night"
    assert enhance("A white Audi.", "vehicle", "") == "A white Audi."
    assert DEFAULT_VEHICLE_PROMPT == " image taken by traffic surveillance cameras"


def test_a_small_training_set_still_routes_every_challenge_type_and_brand(tmp_path):
    from traffic_retrieval.core.labels import Label, write_labels
    from traffic_retrieval.core.layout import find_vocabulary
    from traffic_retrieval.core.vocab import packaged_vocabulary

    data = tmp_path / "datasets"
    write_labels(data / "train" / "train_label.txt", [Label("a.jpg", "white Audi", "This is a white Audi"),
                                                       Label("b.jpg", "Truck", "A Truck")])
    vocab = find_vocabulary(data)
    assert {"Sedan", "SUV", "Truck"} <= set(vocab.types) and "Chery" in vocab.brands
    assert vocab.colours[0] == "white"  # the data's own words first
    assert route(["This is a grey Chery Sedan.", "A woman aged 18-60."], vocab) == ["vehicle", "pedestrian"]
    explicit = tmp_path / "vocab.json"
    Vocabulary(("white",), ("Truck",), ("Audi",)).save(explicit)
    assert find_vocabulary(data, explicit) == Vocabulary(("white",), ("Truck",), ("Audi",))  # as given
    assert find_vocabulary(tmp_path / "nothing") == packaged_vocabulary()
