"""Zero-shot attribute augmentation: candidates, completion, resumability."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from traffic_retrieval.training import augment as aug
from traffic_retrieval.core.attributes import Pedestrian, Vehicle
from traffic_retrieval.core.labels import Label, read_labels, write_labels
from traffic_retrieval.retrieval.encode import EncodeSettings
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.core.vocab import Vocabulary

ENCODE = EncodeSettings(chunk=3, workers=0, progress=False)
VOCAB = Vocabulary(("black", "red", "white"), ("SUV", "Sedan", "Truck"), ("Audi", "Golden Dragon", "Hongyan"))


def test_candidates_keep_known_parts_and_never_guess_brands():
    assert len(aug.candidates(Vehicle(None, "Audi", None), VOCAB)) == 3 * 3
    assert {v.colour for v in aug.candidates(Vehicle("red", "Audi", None), VOCAB)} == {"red"}
    assert {v.brand for v in aug.candidates(Vehicle(None, None, "Truck"), VOCAB)} == {None}
    assert len(aug.candidates(Vehicle(None, None, "Truck"), VOCAB, complete_brand=True)) == 3 * 3
    assert aug.candidates(Vehicle("red", "Audi", "SUV"), VOCAB) == [Vehicle("red", "Audi", "SUV")]


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelSettings("TR-ViT-Tiny", None))


@pytest.fixture
def split(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "train_images"
    images.mkdir()
    labels = []
    vehicles = ["red Audi", "SUV", "Hongyan", "white Golden Dragon", "black Audi Sedan", "Truck", "red Hongyan"]
    for i, attribute in enumerate(vehicles):
        name = f"v{i}.jpg"
        Image.new("RGB", (90 + 7 * i, 50), (40 * i, 200 - 20 * i, 90)).save(images / name)
        labels.append(Label(name, attribute, f"{'This is a' if i % 2 else 'A'} {attribute}"))
    p = Pedestrian(gender="female", age="18-60", orientation="back", backpack=True)
    Image.new("RGB", (40, 100), (10, 10, 10)).save(images / "000001.jpg")
    labels.insert(3, Label("000001.jpg", p.to_flags(), "A female pedestrian with her back to the camera."))
    label_file = tmp_path / "train_label.txt"
    write_labels(label_file, labels)
    return label_file, images


def test_augment_completes_colour_and_type_only(tiny, split, tmp_path):
    label_file, images = split
    out = aug.augment(tiny, label_file, images, tmp_path / "aug.txt", VOCAB, ENCODE)
    assert read_labels(tmp_path / "aug.txt") == out
    originals = read_labels(label_file)
    assert [l.image for l in out] == [l.image for l in originals]
    for before, after in zip(originals, out):
        if before.kind == "pedestrian":
            assert after == before
            continue
        partial, full = VOCAB.parse(before.attribute), VOCAB.parse(after.completed)
        assert full.colour and full.type, after
        assert full.brand == partial.brand  # brands are never guessed by default
        for part in ("colour", "brand", "type"):
            if getattr(partial, part):
                assert getattr(full, part) == getattr(partial, part)
    assert out[5].completed == "black Audi Sedan"  # already complete: kept


def test_augment_resumes_to_the_same_file(tiny, split, tmp_path, monkeypatch):
    label_file, images = split
    whole = tmp_path / "whole.txt"
    aug.augment(tiny, label_file, images, whole, VOCAB, ENCODE)

    calls = {"n": 0}
    original = aug.complete_chunk

    def dies_on_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return original(*args, **kwargs)

    resumed = tmp_path / "resumed.txt"
    monkeypatch.setattr(aug, "complete_chunk", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        aug.augment(tiny, label_file, images, resumed, VOCAB, ENCODE)
    assert not resumed.exists()  # nothing half-written is left where a later step would trust it
    redone = []
    monkeypatch.setattr(aug, "complete_chunk", lambda *a, **k: redone.append(1) or original(*a, **k))
    aug.augment(tiny, label_file, images, resumed, VOCAB, ENCODE)
    assert len(redone) == 2  # of 3 chunks: the finished one was not done again
    assert resumed.read_bytes() == whole.read_bytes()
    assert not list(tmp_path.glob(".resumed.txt.parts-*"))


def test_completion_accuracy_counts_only_missing_parts():
    truth = [Label("a.jpg", "red Audi", "A red Audi", "red Audi SUV"),
             Label("b.jpg", "Truck", "A Truck", "white Hongyan Truck"),
             Label("c.jpg", "Hongyan", "A Hongyan", "black Hongyan Truck")]
    predicted = [Label("a.jpg", "red Audi", "A red Audi", "red Audi SUV"),  # type right
                 Label("b.jpg", "Truck", "A Truck", "black Truck"),  # colour wrong
                 Label("c.jpg", "Hongyan", "A Hongyan", "black Hongyan Sedan")]  # colour right, type wrong
    acc = aug.completion_accuracy(predicted, truth, VOCAB)
    assert acc["colour"]["labels"] == 2 and acc["colour"]["accuracy"] == 0.5
    assert acc["colour"]["per_class"] == {"black": 1.0, "white": 0.0}
    assert acc["type"]["labels"] == 2 and acc["type"]["accuracy"] == 0.5
    assert acc["type"]["per_class"] == {"SUV": 1.0, "Truck": 0.0}
