"""Reliability: bad images, malformed text, atomic outputs, content-keyed caches, fuzzing, memory.

The kill -9 tests are in test_interruptions.py; the server's query parameters are fuzzed in
test_serve.py.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from traffic_retrieval.apps import cli
from traffic_retrieval.retrieval import store
from traffic_retrieval.training import entry as train_entry
from traffic_retrieval.core.images import list_images
from traffic_retrieval.retrieval.encode import EncodeSettings, encode_images
from traffic_retrieval.retrieval.store import gallery_embeddings
from traffic_retrieval.core.fileio import InputError
from traffic_retrieval.retrieval.pipeline import QuerySettings, infer
from traffic_retrieval.core.labels import Label, parse_label_line, read_labels, write_labels
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.training.prepare import prepare
from traffic_retrieval.retrieval.rerank import METHODS, RerankSettings
from traffic_retrieval.core.routing import merge_by_index, route, split_by_kind
from traffic_retrieval.core.submission import SubmissionError, parse_submission, read_submission, validate_submission
from traffic_retrieval.core.vocab import Vocabulary

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "traffic_retrieval"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
VOCAB = Vocabulary(("black", "red", "white"), ("SUV", "Sedan", "Truck"), ("Audi", "Hongyan"))


# ------------------------------------------------------------------ images

def _jpeg(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", **kwargs)
    return buf.getvalue()


def _blocks() -> Image.Image:
    """Flat 16 px blocks: JPEG at quality 100 without subsampling decodes them exactly, rotated or not."""
    image = Image.new("RGB", (64, 32))
    for i in range(4):
        for j in range(2):
            image.paste((60 * i, 200 - 90 * j, 50 + 40 * i * j), (16 * i, 16 * j, 16 * i + 16, 16 * j + 16))
    return image


def write_zoo(folder: Path) -> dict[str, bool]:
    """Every kind of image file the issue names; name -> whether it can be read."""
    folder.mkdir(parents=True, exist_ok=True)
    base = _blocks()
    noise = Image.effect_noise((200, 200), 60).convert("RGB")
    png = io.BytesIO()
    base.save(png, "PNG")
    upright = Image.Exif()
    upright[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    files = {
        "zero.jpg": (b"", False),
        "truncated.jpg": (_jpeg(noise)[:700], False),
        "corrupt.jpg": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, False),
        "png_named.jpg": (png.getvalue(), True),
        "upright.jpg": (_jpeg(base, quality=100, subsampling=0), True),
        "exif_rotated.jpg": (_jpeg(base.transpose(Image.Transpose.ROTATE_90), quality=100, subsampling=0,
                                   exif=upright), True),
        "rotated_no_exif.jpg": (_jpeg(base.transpose(Image.Transpose.ROTATE_90), quality=100, subsampling=0), True),
        "tiny_3x5.jpg": (_jpeg(base.resize((3, 5))), True),
        "large_4000x3000.jpg": (_jpeg(base.resize((4000, 3000))), True),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    for mode, suffix in (("L", "jpg"), ("CMYK", "jpg"), ("RGBA", "png"), ("P", "png"), ("LA", "png"), ("1", "png")):
        base.convert(mode).save(folder / f"mode_{mode}.{suffix}")
        files[f"mode_{mode}.{suffix}"] = (b"", True)
    return {name: readable for name, (_, readable) in files.items()}


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelSettings("TR-ViT-Tiny", None))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> tuple[Path, dict[str, bool]]:
    folder = tmp_path_factory.mktemp("zoo")
    return folder, write_zoo(folder)


@pytest.fixture(scope="module")
def zoo_embeddings(tiny, zoo):
    folder, readable = zoo
    names = sorted(readable) + ["missing.jpg"]
    emb, ok = encode_images(tiny, [folder / n for n in names], EncodeSettings(batch_size=4, workers=0, progress=False))
    return dict(zip(names, emb)), dict(zip(names, ok))


def test_every_kind_of_image_is_read_or_reported_and_skipped(zoo, zoo_embeddings):
    _, readable = zoo
    emb, ok = zoo_embeddings
    assert ok == {**readable, "missing.jpg": False}
    for name, vector in emb.items():
        assert np.linalg.norm(vector) == pytest.approx(1.0 if ok[name] else 0.0, abs=1e-5), name


def test_exif_rotation_is_applied(zoo_embeddings):
    emb, _ = zoo_embeddings
    np.testing.assert_allclose(emb["exif_rotated.jpg"], emb["upright.jpg"], atol=1e-5)
    assert np.abs(emb["rotated_no_exif.jpg"] - emb["upright.jpg"]).max() > 1e-3  # the test can tell


def test_unreadable_images_in_a_worker_process_are_skipped_too(tiny, zoo):
    folder, _ = zoo
    paths = [folder / "zero.jpg", folder / "upright.jpg", folder / "truncated.jpg"]
    _, ok = encode_images(tiny, paths, EncodeSettings(batch_size=2, workers=1, progress=False))
    assert ok.tolist() == [False, True, False]


def test_strict_aborts_naming_the_first_unreadable_image(tiny, zoo, tmp_path):
    folder, _ = zoo
    paths = [folder / "upright.jpg", folder / "mode_L.jpg", folder / "truncated.jpg", folder / "zero.jpg"]
    with pytest.raises(InputError) as e:
        encode_images(tiny, paths, EncodeSettings(batch_size=2, workers=0, progress=False, strict=True))
    assert e.value.path == str(folder / "truncated.jpg") and "unreadable" in e.value.defect
    # a cache written without --strict does not let --strict pass
    gallery_embeddings(tiny, paths, EncodeSettings(cache_dir=tmp_path, workers=0, progress=False))
    with pytest.raises(InputError, match="truncated.jpg"):
        gallery_embeddings(tiny, paths, EncodeSettings(cache_dir=tmp_path, workers=0, progress=False, strict=True))


@pytest.fixture
def test_layout(tmp_path) -> Path:
    """A test split whose gallery holds every kind of image, four of them unreadable."""
    data = tmp_path / "datasets"
    readable = write_zoo(data / "test" / "test_images")
    assert sum(not r for r in readable.values()) == 3
    (data / "test" / "test_images" / "unreadable.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    queries = ["This is a red Audi SUV.", "A white Truck.", "A male pedestrian with a backpack.", "A black Sedan"]
    (data / "test" / "test_text.txt").write_text("\n".join(queries) + "\n")
    return data


def test_a_skipped_gallery_image_never_appears_in_a_submission(tiny, test_layout, tmp_path, capsys):
    bad = {"zero.jpg", "truncated.jpg", "corrupt.jpg", "unreadable.png"}
    images = {p.name for p in list_images(test_layout / "test" / "test_images")}
    assert bad < images and len(images - bad) >= 10
    for method in (None, *METHODS):
        out = tmp_path / f"sub-{method}.json"
        settings_ = RerankSettings(method=method) if method else None
        ranking = infer(test_layout, out, ModelSettings(), QuerySettings(rerank=settings_, candidates=len(images)),
                        EncodeSettings(cache_dir=tmp_path / "cache", workers=0, progress=False))
        submitted = {n for _, names in read_submission(out) for n in names}
        assert len(submitted) >= 10 and not submitted & bad, method
        assert ranking.ok.sum() == len(images) - len(bad)
    err = capsys.readouterr().err
    assert f"4 of {len(images)} gallery images unreadable, skipped:" in err
    assert all(str(test_layout / "test" / "test_images" / name) in err for name in bad)


def test_infer_strict_exits_2_naming_the_image_and_writes_nothing(test_layout, tmp_path, capsys):
    out = tmp_path / "sub.json"
    code = cli.main(["infer", "--data", str(test_layout), "--out", str(out), "--workers", "0", "--cache-dir", "",
                     "--pretrained", "none", "--strict"])
    assert code == 2 and not out.exists()
    assert re.search(r"error: .*test_images/(corrupt|truncated|zero)\.jpg: unreadable image", capsys.readouterr().err)


@pytest.fixture
def train_layout(tmp_path) -> Path:
    """Vehicle labels, partial ones with an unreadable image (zero bytes, missing, corrupt)."""
    data = tmp_path / "datasets"
    images = data / "train" / "train_images"
    images.mkdir(parents=True)
    labels = []
    for i, (attribute, image) in enumerate([("red Audi", "ok"), ("SUV", "zero"), ("Hongyan", "missing"),
                                            ("white Audi Sedan", "zero"), ("black Hongyan", "ok"),
                                            ("Truck", "corrupt"), ("Audi", "ok")]):
        name = f"v{i}.jpg"
        if image == "ok":
            Image.new("RGB", (80 + 9 * i, 40), (30 * i, 90, 200 - 20 * i)).save(images / name)
        elif image != "missing":
            (images / name).write_bytes(b"" if image == "zero" else b"\xff\xd8garbage")
        labels.append(Label(name, attribute, f"A {attribute}"))
    write_labels(data / "train" / "train_label.txt", labels)
    VOCAB.save(data.parent / "car_attribute.json")
    return data


def test_augment_leaves_unreadable_labels_with_three_fields_and_counts_them(train_layout, tmp_path, capsys):
    out = tmp_path / "augmented.txt"
    code = cli.main(["augment", "--data", str(train_layout), "--out", str(out), "--workers", "0", "--chunk", "3",
                     "--pretrained", "none"])
    assert code == 0
    done = {l.image: l for l in read_labels(out)}
    assert [l.image for l in read_labels(out)] == [f"v{i}.jpg" for i in range(7)]
    for name in ("v1.jpg", "v2.jpg", "v5.jpg"):  # partial labels whose image cannot be read
        assert done[name].completed is None and done[name].to_line().count("$") == 2
    assert done["v3.jpg"].completed == "white Audi Sedan"  # complete already: its image is never opened
    assert all(done[n].completed for n in ("v0.jpg", "v4.jpg", "v6.jpg"))
    err = capsys.readouterr().err
    assert "3 of 6 images to complete unreadable, skipped:" in err
    assert str(train_layout / "train" / "train_images" / "v2.jpg") in err


def test_augment_strict_exits_2_and_writes_nothing(train_layout, tmp_path, capsys):
    out = tmp_path / "augmented.txt"
    code = cli.main(["augment", "--data", str(train_layout), "--out", str(out), "--workers", "0", "--strict",
                     "--pretrained", "none"])
    assert code == 2 and not out.exists()
    assert f"error: {train_layout / 'train' / 'train_images' / 'v1.jpg'}: unreadable image" in capsys.readouterr().err


def test_augment_names_the_line_of_a_vehicle_outside_the_vocabulary_before_any_work(train_layout, tmp_path, monkeypatch):
    label_file = train_layout / "train" / "train_label.txt"
    lines = label_file.read_text().splitlines()
    lines.insert(2, "")  # a blank line: line numbers are the file's, not the labels'
    lines.insert(5, "v9.jpg$purple Zeppelin$A purple Zeppelin")
    label_file.write_text("\n".join(lines) + "\n")
    from traffic_retrieval.training import augment as aug
    monkeypatch.setattr(aug, "encode_images", lambda *a, **k: pytest.fail("encoded before checking the labels"))
    with pytest.raises(InputError) as e:
        aug.augment(load_model(ModelSettings("TR-ViT-Tiny", None)), label_file, train_layout / "train" / "train_images",
                    tmp_path / "out.txt", VOCAB, EncodeSettings(chunk=2, workers=0, progress=False))
    assert (e.value.path, e.value.line) == (str(label_file), 6) and "purple Zeppelin" in e.value.defect


def test_prepare_leaves_unreadable_images_out_of_the_csv(train_layout, tmp_path, capsys):
    prepared = prepare(train_layout, tmp_path / "out", vocab_path=train_layout.parent / "car_attribute.json",
                       progress=False)
    rows = pd.read_csv(prepared / "train.csv", sep="\t")
    assert [Path(p).name for p in rows["filepath"]] == ["v0.jpg", "v4.jpg", "v6.jpg"]
    assert len(read_labels(prepared / "train_vehicle_label.txt")) == 7  # label splits keep every label
    err = capsys.readouterr().err
    assert "4 of 7 train images unreadable, skipped:" in err and "v2.jpg" in err


def test_prepare_strict_aborts_and_writes_nothing(train_layout, tmp_path):
    with pytest.raises(InputError, match=r"v1\.jpg: unreadable image"):
        prepare(train_layout, tmp_path / "out", strict=True, progress=False)
    assert not (tmp_path / "out").exists()


def _csv_dataset(tmp_path: Path, names: list[str]):
    from open_clip_train.data import CsvDataset

    rows = pd.DataFrame({"filepath": [str(tmp_path / n) for n in names], "title": [f"caption of {n}" for n in names]})
    rows.to_csv(tmp_path / "train.csv", sep="\t", index=False)
    return CsvDataset, dict(input_filename=str(tmp_path / "train.csv"), transforms=lambda im: im.convert("RGB").size,
                            img_key="filepath", caption_key="title", tokenizer=lambda texts: texts)


def test_training_dataset_skips_an_unreadable_image_to_the_next(tmp_path, caplog):
    Image.new("RGB", (7, 3)).save(tmp_path / "a.jpg")
    Image.new("RGB", (5, 2)).save(tmp_path / "c.jpg")
    (tmp_path / "b.jpg").write_bytes(b"not an image")
    upstream, kwargs = _csv_dataset(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    with pytest.raises(Exception):
        upstream(**kwargs)[1]  # the upstream dataset alone dies on it

    class Patched(upstream):
        __getitem__ = train_entry.skipping_unreadable(upstream.__getitem__)

    dataset = Patched(**kwargs)
    with caplog.at_level(logging.WARNING):
        assert dataset[1] == ((5, 2), "caption of c.jpg")
    assert str(tmp_path / "b.jpg") in caplog.text
    assert dataset[0] == ((7, 3), "caption of a.jpg")
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "c.jpg").unlink()
    with pytest.raises(Exception):  # nothing readable at all: the error is let through, not looped on
        dataset[0]


class _FailsToPickle:
    def __reduce__(self):
        raise RuntimeError("killed while saving")


def test_checkpoints_are_saved_atomically(tmp_path):
    path = tmp_path / "epoch_2.pt"
    state = {"weights": torch.zeros(50_000), "late": _FailsToPickle()}
    with pytest.raises(RuntimeError):
        torch.save(state, path)
    assert path.exists()  # upstream's plain torch.save leaves a half-written checkpoint --resume would pick
    path.unlink()
    save = train_entry.saving_atomically(torch.save)
    with pytest.raises(RuntimeError):
        save(state, path)
    assert list(tmp_path.iterdir()) == []
    save({"epoch": 2}, path)
    assert torch.load(path)["epoch"] == 2 and [p.name for p in tmp_path.iterdir()] == ["epoch_2.pt"]


# ------------------------------------------------------------------ text

@pytest.fixture
def text_layout(tmp_path) -> Path:
    data = tmp_path / "datasets"
    (data / "train" / "train_images").mkdir(parents=True)
    (data / "test").mkdir()
    Image.new("RGB", (20, 10)).save(data / "train" / "train_images" / "a.jpg")
    (data / "train" / "train_label.txt").write_text("a.jpg$red Audi$A red Audi\n")
    (data / "test" / "test_text.txt").write_text("A red Audi\n")
    return data


@pytest.mark.parametrize("name, content, where, defect", [
    ("train/train_label.txt", b"a.jpg$red Audi$A red Audi\r\n\r\nb.jpg$Truck\n", 3, "expected 3 or 4"),
    ("train/train_label.txt", b"\xef\xbb\xbfa.jpg$red Audi$A red Audi\nb.jpg$Tr\xfcck$A Truck\n", 2, "not UTF-8"),
    ("train/train_label.txt", b"a.jpg$0,1,1$A person\n", 1, "pedestrian attribute vector has 3 flags"),
    ("test/test_text.txt", b"A red Audi\nA caf\xe9 racer", 2, "not UTF-8"),
])
def test_prepare_cli_names_file_line_and_writes_nothing(text_layout, tmp_path, capsys, name, content, where, defect):
    (text_layout / name).write_bytes(content)
    out = tmp_path / "out"
    assert cli.main(["prepare", "--data", str(text_layout), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {text_layout / name}:{where}: ") and defect in err, err
    assert not out.exists()


def test_infer_reads_a_query_file_with_bom_crlf_and_no_final_newline(tiny, test_layout, tmp_path):
    (test_layout / "test" / "test_text.txt").write_bytes("\ufeffA red Audi.\r\nA café racer\r\n\r\nA Truck".encode())
    out = tmp_path / "sub.json"
    infer(test_layout, out, ModelSettings(), encode=EncodeSettings(workers=0, progress=False))
    assert [text for text, _ in read_submission(out)] == ["A red Audi.", "A café racer", "A Truck"]


# ------------------------------------------------------------------ nothing half-written

WRITES = re.compile(
    r"\.write_text\(|\.write_bytes\(|(?<![\w.])open\([^)]*['\"][wax]|\b(np|numpy)\.savez?(_compressed)?\((?!f\b|buf\b)"
    r"|torch\.save\([^,]+,(?!\s*(f|out|buf)\b)|\.savefig\((?!f\b|buf\b)|\.to_csv\((?!f\b|buf\b)"
    r"|json\.dump\([^,]+,(?!\s*f\b)|faiss\.write_index\([^,]+,(?!\s*tmp\b)"
    r"|(?<!vocab)(?<!torch)(?<!np)\.save\((?!f\b|buf\b|out\b)"
)
# Writers that are not atomic by themselves, and why that is safe.
NOT_ATOMIC = {
    ("synthetic/generate.py", "(images / item.name).write_bytes(data)"): "into the temporary dataset folder that is swapped in whole",
    ("apps/ablation.py", "MatcherTraining(epochs=s.matcher_epochs, seed=seed)).save(path)"):
        "Matcher.save writes through fileio.atomic_path",
}


def test_every_writer_in_the_package_is_atomic():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "fileio.py":  # where atomicity is implemented
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if WRITES.search(line) and not line.lstrip().startswith("#"):
                found[(path.relative_to(PACKAGE).as_posix(), line.strip())] = number
    unexplained = {k: v for k, v in found.items() if k not in NOT_ATOMIC}
    assert not unexplained, f"writers that bypass fileio.atomic_open: {unexplained}"
    assert WRITES.search('Path(out).write_text("x")') and WRITES.search("torch.save(state, path)")
    assert WRITES.search("np.savez(final, embeddings=emb)") and not WRITES.search("np.savez(f, embeddings=emb)")
    assert WRITES.search("faiss.write_index(index, path)") and not WRITES.search("faiss.write_index(index, tmp)")
    assert WRITES.search("torch.save(obj,  path)") and not WRITES.search("torch.save(obj, f)")


def test_gallery_cache_is_keyed_by_image_content_and_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "gallery"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (30, 20), (80 * i, 40, 40)).save(folder / f"g{i}.jpg")
    paths = list_images(folder)
    model = load_model(ModelSettings("TR-ViT-Tiny", None))
    checkpoint = tmp_path / "model.pt"
    torch.save(model.model.state_dict(), checkpoint)
    calls = []
    original = store.encode_batches
    monkeypatch.setattr(store, "encode_batches", lambda *a, **k: calls.append(1) or original(*a, **k))

    def run(pretrained=checkpoint):
        return gallery_embeddings(load_model(ModelSettings("TR-ViT-Tiny", str(pretrained))), paths,
                                  EncodeSettings(cache_dir=tmp_path / "cache", workers=0, progress=False))

    first, _ = run()
    np.testing.assert_array_equal(run()[0], first)
    assert len(calls) == 1  # served from the cache
    Image.new("RGB", (30, 20), (250, 250, 0)).save(folder / "g1.jpg")  # new bytes, new mtime
    changed, _ = run()
    assert len(calls) == 2 and not np.allclose(changed[1], first[1]) and np.allclose(changed[0], first[0])
    os.utime(folder / "g2.jpg", ns=(1, 1))  # same bytes, other mtime: re-encoded (stat, not hashing)
    run()
    assert len(calls) == 3
    state = model.model.state_dict()
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, checkpoint)
    retrained, _ = run()
    assert len(calls) == 4 and not np.allclose(retrained, changed)
    torch.save(state, tmp_path / "other.pt")  # another checkpoint file
    np.testing.assert_allclose(run(tmp_path / "other.pt")[0], changed, atol=1e-6)
    assert len(calls) == 5 and not list((tmp_path / "cache").glob("*/.*.tmp"))


def test_two_random_initialisations_never_share_cached_work(tmp_path):
    folder = tmp_path / "gallery"
    folder.mkdir()
    Image.new("RGB", (30, 20), (200, 40, 40)).save(folder / "g.jpg")
    first, _ = gallery_embeddings(load_model(ModelSettings("TR-ViT-Tiny", None)), [folder / "g.jpg"], EncodeSettings(cache_dir=tmp_path, workers=0, progress=False))
    other = load_model(ModelSettings("TR-ViT-Tiny", None))
    second, _ = gallery_embeddings(other, [folder / "g.jpg"], EncodeSettings(cache_dir=tmp_path, workers=0, progress=False))
    np.testing.assert_allclose(second, encode_images(other, [folder / "g.jpg"], EncodeSettings(workers=0, progress=False))[0], atol=2e-3)
    assert len(list(tmp_path.glob("gallery-*/manifest.json"))) == 2


# ------------------------------------------------------------------ fuzzing

_words = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=20)
_attribute = st.one_of(
    st.sampled_from(["red Audi", "Truck", "white Hongyan SUV", "Hongyan"]),
    st.lists(st.sampled_from(["0", "1", "2", "", " 1", "x"]), min_size=1, max_size=23).map(",".join),
    _words,
)
_label_line = st.one_of(
    st.tuples(_words, _attribute, _words).map("$".join),
    st.tuples(_words, _attribute, _words, _words).map("$".join),
    _words,
)


@settings(max_examples=300, deadline=None)
@given(line=_label_line)
def test_label_parser_raises_only_value_error_and_round_trips(line):
    try:
        label = parse_label_line(line)
    except ValueError:
        return
    assert parse_label_line(label.to_line()) == label


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_label_line, max_size=8), eol=st.sampled_from(["\n", "\r\n"]))
def test_label_file_is_read_whole_or_refused_by_line(tmp_path, lines, eol):
    path = tmp_path / "labels.txt"
    path.write_bytes(eol.join(lines).encode("utf-8"))
    try:
        labels = read_labels(path)
    except InputError as e:
        assert e.path == str(path) and 1 <= e.line <= len(lines)
        return
    assert len(labels) == sum(1 for line in lines if line.strip())  # nothing silently dropped


_name = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(types=st.lists(_name, max_size=4), brands=st.lists(_name, max_size=4),
       queries=st.lists(st.text(max_size=40), max_size=12), k=st.integers(0, 12))
def test_router_keeps_length_and_order(types, brands, queries, k):
    vocab = Vocabulary(("red",), tuple(types), tuple(brands))
    queries = queries + [f"This is a red {n}." for n in (types + brands)[:k]]
    kinds = route(queries, vocab)
    assert len(kinds) == len(queries) and set(kinds) <= {"vehicle", "pedestrian"}
    assert all(kind == "vehicle" for q, kind in zip(queries, kinds) if q.startswith("This is a red "))
    split = split_by_kind(kinds)
    parts = {kind: (indices, [queries[i] for i in indices]) for kind, indices in split.items()}
    assert merge_by_index(parts, len(queries)) == queries


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["results", "text", "image_names"]) | st.text(max_size=4), children, max_size=4),
    max_leaves=20,
)
_entry = st.one_of(_json, st.fixed_dictionaries({"text": st.one_of(st.text(max_size=8), _json),
                                                 "image_names": st.one_of(st.lists(st.text(max_size=4), max_size=11), _json)}))


@settings(max_examples=300, deadline=None)
@given(document=st.one_of(_json, st.fixed_dictionaries({"results": st.lists(_entry, max_size=4)})),
       queries=st.lists(st.text(max_size=8), max_size=4), k=st.integers(0, 11))
def test_submission_validator_raises_only_submission_error(document, queries, k):
    try:
        results = parse_submission(document)
        validate_submission(results, queries, {n for _, names in results for n in names[1:]}, k)
    except SubmissionError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_reading_random_bytes_as_a_submission_raises_only_submission_error(tmp_path, data):
    (tmp_path / "sub.json").write_bytes(data)
    try:
        read_submission(tmp_path / "sub.json")
    except SubmissionError:
        pass


def test_deeply_nested_json_is_a_submission_error(tmp_path):
    (tmp_path / "sub.json").write_text('{"results": ' + "[" * 100_000)
    with pytest.raises(SubmissionError):
        read_submission(tmp_path / "sub.json")


# ------------------------------------------------------------------ memory

def test_ranking_20000_queries_against_20000_images_stays_under_2_gib():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from memory_ranking import LIMIT, measure_in_subprocess
    finally:
        sys.path.remove(str(BENCHMARKS))
    result = measure_in_subprocess(20_000, 20_000, 128)
    assert result["peak_rss_bytes"] < LIMIT, result
    assert result["broadcast_bytes"] > 50 * LIMIT  # what the seed's broadcast would have needed
