"""search: the Gallery backend, name lookup confined to the gallery folder, routing and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from traffic_retrieval.apps import cli
from traffic_retrieval.retrieval.encode import encode_texts
from traffic_retrieval.core.vocab import packaged_vocabulary
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.core.routing import DEFAULT_VEHICLE_PROMPT
from traffic_retrieval.core.images import image_kind
from traffic_retrieval.retrieval.encode import EncodeSettings
from traffic_retrieval.retrieval.gallery import Gallery, inside, open_folder
from traffic_retrieval.retrieval.pipeline import QuerySettings, answer
from traffic_retrieval.core.vocab import Vocabulary

COLOURS = ["red", "blue", "green", "yellow", "white", "black"]


def draw_gallery(folder: Path, n: int = 6) -> Path:
    """n wide 'vehicles' and n tall 'pedestrians', drawn with PIL in distinct colours."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        colour = COLOURS[i % len(COLOURS)]
        car = Image.new("RGB", (96, 56), "grey")
        ImageDraw.Draw(car).rectangle((10, 15, 86, 45), fill=colour)
        car.save(folder / f"car{i}.jpg")
        person = Image.new("RGB", (40, 90), "darkgrey")
        ImageDraw.Draw(person).ellipse((12, 5, 28, 21), fill="peachpuff")
        ImageDraw.Draw(person).rectangle((10, 22, 30, 60), fill=colour)
        person.save(folder / f"person{i}.png")
    return folder


def random_gallery(folder: Path, n: int, dim: int = 128, seed: int = 0) -> Gallery:
    """A gallery of random unit embeddings (no files), half of each kind."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    kinds = np.array(["vehicle", "pedestrian"] * (n // 2) + ["vehicle"] * (n % 2), dtype=object)
    return Gallery([f"{i:06d}.jpg" for i in range(n)], emb, np.ones(n, bool), kinds, folder=Path(folder))


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelSettings("TR-ViT-Tiny", None))


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return packaged_vocabulary()


@pytest.fixture(scope="module")
def drawn(tmp_path_factory, tiny) -> Gallery:
    root = tmp_path_factory.mktemp("search")
    folder = draw_gallery(root / "gallery")
    (folder / "broken.jpg").write_bytes(b"not an image")
    secret = root / "secret.jpg"
    Image.new("RGB", (50, 30), "red").save(secret)
    (folder / "escape.jpg").symlink_to(secret)
    return open_folder(tiny, folder, EncodeSettings(workers=0, progress=False))


def test_open_folder_leaves_out_links_out_of_the_folder_and_masks_unreadable(drawn):
    assert "escape.jpg" not in drawn.names
    assert len(drawn) == 13
    assert drawn.ok.tolist() == [name != "broken.jpg" for name in drawn.names]
    kinds = dict(zip(drawn.names, drawn.kinds))
    assert {kinds[f"car{i}.jpg"] for i in range(6)} == {"vehicle"}
    assert {kinds[f"person{i}.png"] for i in range(6)} == {"pedestrian"}
    assert np.allclose(np.linalg.norm(drawn.embeddings[drawn.ok], axis=1), 1.0, atol=1e-4)


def test_path_is_a_name_lookup_confined_to_the_folder(drawn, tmp_path):
    assert drawn.path("car0.jpg") == drawn.folder / "car0.jpg"
    for name in ["../secret.jpg", "escape.jpg", str(drawn.folder / "car0.jpg"), "car0.jpg/", "", "CAR0.JPG", "..",
                 "%2e%2e%2fsecret.jpg"]:
        assert drawn.path(name) is None, name


def test_a_link_replacing_a_gallery_file_after_start_up_is_refused(tmp_path):
    folder = draw_gallery(tmp_path / "g", n=1)
    gallery = Gallery(["car0.jpg"], np.ones((1, 4), np.float32), np.ones(1, bool), np.array(["vehicle"]), folder=folder)
    assert gallery.path("car0.jpg") is not None
    outside = tmp_path / "outside.jpg"
    Image.new("RGB", (8, 8)).save(outside)
    (folder / "car0.jpg").unlink()
    (folder / "car0.jpg").symlink_to(outside)
    assert gallery.path("car0.jpg") is None
    assert not inside(folder / "missing.jpg", folder)


def test_image_kind_by_shape(tmp_path):
    Image.new("RGB", (30, 60)).save(tmp_path / "tall.png")
    Image.new("RGB", (60, 30)).save(tmp_path / "wide.png")
    assert image_kind(tmp_path / "tall.png") == "pedestrian"
    assert image_kind(tmp_path / "wide.png") == "vehicle"


def test_gallery_search_honours_kind_and_readable_mask(tmp_path):
    gallery = random_gallery(tmp_path, 40)
    gallery.ok[:4] = False
    query = gallery.embeddings[:1].copy()  # its own (unreadable) image would be the best hit
    scores, indices = gallery.search(query, 50)
    assert 0 not in indices[0] and len(indices[0]) == 36
    assert np.all(np.diff(scores[0]) <= 0)
    expected = np.argsort(-(gallery.embeddings @ query[0]))
    assert indices[0][0] == [j for j in expected if gallery.ok[j]][0]
    _, people = gallery.search(query, 50, "pedestrian")
    assert set(gallery.kinds[people[0]]) == {"pedestrian"} and len(people[0]) == 18


def test_gallery_rejects_misaligned_fields(tmp_path):
    with pytest.raises(ValueError):
        Gallery(["a.jpg"], np.zeros((2, 4), np.float32), np.ones(2, bool), np.array(["vehicle"] * 2))


def test_answer_routes_enhances_and_filters(drawn, tiny, vocab):
    car = answer(tiny, drawn, vocab, "a red SUV", "auto", QuerySettings(topk=5))
    assert car.kind == "vehicle" and car.text == "a red SUV" + DEFAULT_VEHICLE_PROMPT
    assert [h.rank for h in car.hits] == [1, 2, 3, 4, 5]
    q = encode_texts(tiny, [car.text])[0]
    by_name = dict(zip(drawn.names, drawn.embeddings))
    assert [h.score for h in car.hits] == pytest.approx([float(by_name[h.name] @ q) for h in car.hits], abs=1e-5)
    assert "broken.jpg" not in [h.name for h in car.hits]

    person = answer(tiny, drawn, vocab, "A female pedestrian with a backpack.", "auto", QuerySettings(topk=20))
    assert person.kind == "pedestrian" and person.text == person.query
    assert len(person.hits) == 12  # whole gallery but the unreadable image

    forced = answer(tiny, drawn, vocab, "a red SUV", "pedestrian", QuerySettings(topk=20))
    assert forced.kind == "pedestrian" and forced.text == "a red SUV"
    assert sorted(h.name for h in forced.hits) == sorted(f"person{i}.png" for i in range(6))

    plain = answer(tiny, drawn, vocab, "a red SUV.", "vehicle", QuerySettings(topk=3, vehicle_prompt=""))
    assert plain.text == "a red SUV." and {h.name[:3] for h in plain.hits} == {"car"}
    with pytest.raises(ValueError):
        answer(tiny, drawn, vocab, "a red SUV", "bicycle")


def test_cli_prints_ranked_names_and_writes_a_grid(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = draw_gallery(tmp_path / "gallery", n=3)
    grid = tmp_path / "grid.png"
    code = cli.main(["search", "a blue Sedan", "--gallery", str(folder), "--cache-dir", "", "--workers", "0",
                     "--pretrained", "none",
                     "--topk", "4", "--kind", "vehicle", "--grid", str(grid)])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("kind: vehicle")
    rows = [line.split() for line in lines[2:5]]
    assert [r[0] for r in rows] == ["1", "2", "3"]  # only the three wide images are vehicles
    assert {r[1] for r in rows} == {"car0.jpg", "car1.jpg", "car2.jpg"}
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert lines[5] == f"grid -> {grid}"
    with Image.open(grid) as im:
        assert im.format == "PNG" and im.width > 100
    assert not list(tmp_path.rglob("gallery-*")), "--cache-dir '' must not cache"


def test_cli_names_a_missing_gallery_folder(tmp_path, capsys):
    assert cli.main(["search", "a red SUV", "--data", str(tmp_path / "absent"), "--pretrained", "none"]) == 2
    assert "absent/test/test_images: not found; expected a folder of images" in capsys.readouterr().err
