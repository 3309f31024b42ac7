import json

import pytest

from traffic_retrieval.apps import cli
from traffic_retrieval.core.evaluation import evaluate
from traffic_retrieval.core.ground_truth import read_ground_truth
from traffic_retrieval.core.routing import route
from traffic_retrieval.core.vocab import Vocabulary, packaged_vocabulary
from traffic_retrieval.core.fileio import InputError
from traffic_retrieval.core.submission import write_submission

from conftest import shared_file  # noqa: E402 (tests/ is on sys.path under pytest)
KEYS = {"map_official", "map_strict", "recall@1", "recall@5", "recall@10", "queries", "per_kind"}
F = "0,0,1,0,1,0,0,0,1,0,0,0,0,0,1,0,0,0,0,0,0"  # a female pedestrian, 18-60, facing the camera
M = "1,0,1,0,0,1,0,0,0,0,1,0,1,0,0,0,0,0,0,0,0"

ORGANISERS = (
    "This is a white Audi.$a.jpg$b.jpg\n"
    "A male pedestrian who is between 18 and 60 years old.$c.jpg\n"
    "This is a grey Chery Sedan.\n"  # no relevant image in the gallery
)
LABELS = (
    f"a.jpg$white Audi$This is a white Audi.\n"
    f"p1.jpg${F}$A female pedestrian, facing the camera.\n"
    f"b.jpg$white  Audi$A white Audi.$white Audi Sedan\n"
    f"p2.jpg${F.replace(',', ', ')}$A woman aged 18-60.\n"
    f"p3.jpg${M}$A man with a backpack.\n"
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_organisers_format(tmp_path):
    path = write(tmp_path, "gt.txt", "\ufeff" + ORGANISERS.replace("\n", "\r\n"))
    queries, relevant, kinds = read_ground_truth(path)
    assert queries == [
        "This is a white Audi.",
        "A male pedestrian who is between 18 and 60 years old.",
        "This is a grey Chery Sedan.",
    ]
    assert relevant == [{"a.jpg", "b.jpg"}, {"c.jpg"}, set()]
    assert kinds == ["vehicle", "pedestrian", "vehicle"]
    # organisers'-format queries are routed as infer routes them, by the given vocabulary
    assert read_ground_truth(path, Vocabulary(("white",), ("Sedan",), ()))[2] == ["pedestrian", "pedestrian", "vehicle"]


def test_read_label_format_groups_equal_attributes(tmp_path):
    queries, relevant, kinds = read_ground_truth(write(tmp_path, "val_label.txt", LABELS))
    assert queries[0] == "This is a white Audi." and queries[3] == "A woman aged 18-60."
    assert relevant == [{"a.jpg", "b.jpg"}, {"p1.jpg", "p2.jpg"}, {"a.jpg", "b.jpg"}, {"p1.jpg", "p2.jpg"}, {"p3.jpg"}]
    assert kinds == ["vehicle", "pedestrian", "vehicle", "pedestrian", "pedestrian"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("q$a.jpg\nq2$a.jpg$not an image\n", r"gt.txt:2: 'not an image' is not an image name"),
        ("a.jpg$white Audi$A white Audi.\nb.jpg$1,0$A man.\n", r"gt.txt:2: .*2 flags"),
        ("\n\n", r"no ground-truth lines"),
    ],
)
def test_ground_truth_defects_name_file_and_line(tmp_path, text, match):
    with pytest.raises(InputError, match=match):
        read_ground_truth(write(tmp_path, "gt.txt", text))


def test_real_label_lines_are_read_as_label_format(tmp_path):
    source = shared_file("real_vehicle_labels_train.txt")
    lines = source.read_text(encoding="utf-8").splitlines()[:200]
    queries, relevant, kinds = read_ground_truth(write(tmp_path, "labels.txt", "\n".join(lines)))
    assert queries == [line.split("$")[2] for line in lines]
    assert set(kinds) == {"vehicle"}
    assert all(line.split("$")[0] in rel for line, rel in zip(lines, relevant))


def test_real_captions_are_routed_to_their_kind_by_the_packaged_vocabulary():
    source = shared_file("real_pedestrian_captions.txt")
    captions = source.read_text(encoding="utf-8").splitlines()
    assert set(route([c for c in captions if c.strip()], packaged_vocabulary())) == {"pedestrian"}
    vehicle_captions = [line.split("$")[2] for line in shared_file("real_vehicle_labels_train.txt").read_text().splitlines()]
    assert set(route(vehicle_captions, packaged_vocabulary())) == {"vehicle"}


def _submission(tmp_path, perfect=True):
    pad = [f"x{i}.jpg" for i in range(10)]
    rankings = [["a.jpg", "b.jpg"] + pad[:8], ["c.jpg"] + pad[:9], pad]
    if not perfect:
        rankings[0] = pad[:1] + ["a.jpg"] + pad[1:9]  # one hit at rank 2 of two relevant
    texts = [line.split("$")[0] for line in ORGANISERS.splitlines()]
    path = tmp_path / "submission.json"
    write_submission(path, list(zip(texts, rankings)))
    return path


def test_evaluate_scores_hand_computed(tmp_path):
    gt = write(tmp_path, "gt.txt", ORGANISERS)
    metrics = evaluate(_submission(tmp_path, perfect=False), gt)
    # per query: official (1/2)/1, 1, 0; strict (1/2)/2, 1, 0 (no relevant image)
    assert metrics["map_official"] == pytest.approx(1.5 / 3)
    assert metrics["map_strict"] == pytest.approx(1.25 / 3)
    assert metrics["per_kind"]["pedestrian"]["map_official"] == 1.0
    assert metrics["per_kind"]["vehicle"]["recall@5"] == pytest.approx(0.5)


def test_cli_end_to_end(tmp_path, capsys, monkeypatch):
    gt = write(tmp_path, "gt.txt", ORGANISERS)
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for name in ["a.jpg", "b.jpg", "c.jpg"] + [f"x{i}.jpg" for i in range(10)]:
        (gallery / name).write_bytes(b"")
    out = tmp_path / "metrics.json"
    argv = ["evaluate", "--submission", str(_submission(tmp_path)), "--ground-truth", str(gt)]
    assert cli.main(argv + ["--gallery", str(gallery), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "official" in printed and "strict" in printed and "pedestrian" in printed
    metrics = json.loads(printed.strip().splitlines()[-1])
    assert set(metrics) == KEYS
    assert metrics["queries"] == 3
    assert metrics["map_official"] == pytest.approx(2 / 3)  # the third query has no relevant image
    assert metrics["per_kind"]["pedestrian"]["map_strict"] == 1.0
    assert json.loads(out.read_text()) == metrics


def test_cli_submission_error_exits_2(tmp_path, capsys, monkeypatch):
    gt = write(tmp_path, "gt.txt", ORGANISERS)
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    argv = ["evaluate", "--submission", str(_submission(tmp_path)), "--ground-truth", str(gt)]
    assert cli.main(argv + ["--gallery", str(gallery)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: query 0 ") and "not an image of the gallery" in captured.err
    assert captured.out == ""


def test_cli_bad_ground_truth_exits_2(tmp_path, capsys, monkeypatch):
    gt = write(tmp_path, "gt.txt", "q$a.jpg$oops\n")
    assert cli.main(["evaluate", "--submission", str(_submission(tmp_path)), "--ground-truth", str(gt)]) == 2
    assert "gt.txt:1" in capsys.readouterr().err
