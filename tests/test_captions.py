import random

import pytest
from hypothesis import given, strategies as st

from strategies import pedestrians as PEDESTRIANS
from traffic_retrieval.core.attributes import Pedestrian, Vehicle
from traffic_retrieval.core.captions import (
    OPENINGS,
    parse_pedestrian_caption,
    parse_vehicle_caption,
    pedestrian_caption,
    unrecognised_text,
    vehicle_caption,
)
from traffic_retrieval.core.vocab import Vocabulary

from conftest import shared_file as _data  # noqa: E402 (tests/ is on sys.path under pytest)


VOCAB = Vocabulary(
    colours=("grey", "orange", "white"), types=("SUV", "Sedan", "Truck"), brands=("Audi", "Balong Heavy Truck", "Chery")
)


# ---------------------------------------------------------------- vehicles


@pytest.mark.parametrize(
    "vehicle, prefix, period, caption",
    [
        (Vehicle("white", "Audi"), "This is a", False, "This is a white Audi"),
        (Vehicle("orange", "Chery", "Sedan"), "This is a", True, "This is an orange Chery Sedan."),
        (Vehicle("orange", "Audi"), "A", False, "An orange Audi"),
        (Vehicle(type="SUV"), "A", False, "A SUV"),  # the challenge writes "A SUV"
        (Vehicle(brand="Audi"), "This is a", False, "This is an Audi"),
        (Vehicle(brand="Balong Heavy Truck"), "A", True, "A Balong Heavy Truck."),
    ],
)
def test_vehicle_caption_and_parse(vehicle, prefix, period, caption):
    assert vehicle_caption(vehicle, prefix, period) == caption
    assert parse_vehicle_caption(f"  {caption} ", VOCAB) == (prefix, vehicle)


def test_vehicle_caption_rejects_bad_input():
    with pytest.raises(ValueError, match="prefix"):
        vehicle_caption(Vehicle("white", "Audi"), "The")
    with pytest.raises(ValueError, match="empty"):
        vehicle_caption(Vehicle(), "A")


@pytest.mark.parametrize(
    "text",
    ["This is a flying saucer", "A Tractor", "white Audi", "This is a white Audi Tractor.",
     "A pedestrian who is male is a minor, and is standing sideways. He is wearning glasses."],
)
def test_parse_vehicle_caption_rejects_non_vehicles(text):
    assert parse_vehicle_caption(text, VOCAB) is None


def test_real_vehicle_captions_round_trip():
    vocab = Vocabulary.load(_data("car_attribute.json"))
    lines = _data("real_vehicle_labels_train.txt").read_text(encoding="utf-8").splitlines()
    parsed = round_trip = completed = 0
    for line in lines:
        _, attribute, caption, complete = line.split("$")
        result = parse_vehicle_caption(caption, vocab)
        if result is None or result[1].to_text() != attribute:
            continue
        parsed += 1
        style, vehicle = result
        round_trip += vehicle_caption(vehicle, style) == caption
        full = vocab.parse(complete)
        completed += bool(
            full and full.complete and all(a in (None, b) for a, b in zip(
                (vehicle.colour, vehicle.brand, vehicle.type), (full.colour, full.brand, full.type)))
        )
    print(f"\nvehicle captions: {len(lines)} lines, parsed {parsed}, round trip {round_trip}, "
          f"completed field consistent {completed}")
    assert parsed == round_trip == completed == len(lines)


# ------------------------------------------------------------- pedestrians


def test_real_pedestrian_captions_fully_recognised():
    lines = _data("real_pedestrian_captions.txt").read_text(encoding="utf-8").splitlines()
    left = sum(len(unrecognised_text(line)) for line in lines)
    total = sum(len(line) for line in lines)
    print(f"\npedestrian captions: {len(lines)} lines, unrecognised fraction {left / total:.6f}")
    assert left == 0
    for line in lines:  # every caption states gender, age band and orientation (else ValueError)
        parse_pedestrian_caption(line)


@pytest.mark.parametrize(
    "caption, expected",
    [
        ("A walking woman who is aged over 60, and is standing sideways and clutching a handbag. "
         "She is wearing boots,a hat.",
         Pedestrian("female", ">60", "side", handbag=True, boots=True, hat=True)),
        ("A pedestrian who is male is a minor, with his body back to the camera and with a backpack "
         "and holds objects in front. He is in a long sleeve shirt with an upper stripe and a splice on the upper.",
         Pedestrian("male", "<18", "back", "long", backpack=True, holding=True, upper_stripe=True, upper_splice=True)),
        ("A female pedestrian is someone who walks on foot, is at least 60 years old, with her body facing "
         "the camera and has a bag over the shoulder. She is in a tee shirt with short sleeves with a logo on "
         "the upper and wearing skirt or dress. She is wearning glasses,a coat that is long.",
         Pedestrian("female", ">60", "front", "short", shoulder_bag=True, upper_logo=True, skirt_dress=True,
                    glasses=True, long_coat=True)),
        ("A walking man who is not an adult, and is standing sideways and is carrying a shoulder bag. "
         "He is in a shirt with an upper plaid. He is wearning a longcoat.",
         Pedestrian("male", "<18", "side", shoulder_bag=True, upper_plaid=True, long_coat=True)),
        ("a male pedestrian who is an adult person aged 18-60 , with his body facing the camera .",
         Pedestrian("male", "18-60", "front")),
    ],
)
def test_parse_pedestrian_caption(caption, expected):
    assert unrecognised_text(caption) == ""
    assert parse_pedestrian_caption(caption) == expected


def test_unrecognised_content_is_reported():
    junk = ("A pedestrian who is male is an adult person aged 18-60, with his body facing the camera. "
            "He rides a unicorn.")
    assert unrecognised_text(junk) == "rides unicorn"
    with pytest.raises(ValueError, match="rides unicorn"):
        parse_pedestrian_caption(junk)


@pytest.mark.parametrize(
    "caption, message",
    [
        ("A pedestrian who is male. He is wearning glasses.", "age, orientation"),
        ("A pedestrian who is between 18 and 60 years old, and is standing sideways.", "gender"),
        ("A walking man who is a minor, with her body facing the camera.", "conflicting"),
        ("A walking man who is a minor and aged over 60, and is standing sideways.", "conflicting"),
    ],
)
def test_parse_pedestrian_caption_reports_missing_and_conflicting(caption, message):
    with pytest.raises(ValueError, match=message):
        parse_pedestrian_caption(caption)




@given(PEDESTRIANS, st.integers(0, 2**32))
def test_pedestrian_caption_round_trip(p, seed):
    caption = pedestrian_caption(p, random.Random(seed))
    assert caption == pedestrian_caption(p, random.Random(seed))
    assert unrecognised_text(caption) == ""
    assert parse_pedestrian_caption(caption) == p


def test_pedestrian_caption_varies_and_omits_false_attributes():
    p = Pedestrian("female", "<18", "back", "short", backpack=True)
    rng = random.Random(0)
    captions = {pedestrian_caption(p, rng) for _ in range(200)}
    openings = {o.format(male="female", man="woman") for o in OPENINGS}
    assert all(any(c.startswith(o) for c in captions) for o in openings)
    assert len(captions) > 20
    assert not any(word in c for c in captions for word in ("hat", "glasses", "handbag", "boots", "skirt"))
