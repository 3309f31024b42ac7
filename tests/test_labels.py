"""Label files and the file I/O under them: tolerant reading, precise errors, atomic writes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from traffic_retrieval.core.attributes import looks_like_flags
from traffic_retrieval.core.fileio import InputError, atomic_open, atomic_write_bytes, atomic_write_text
from traffic_retrieval.core.labels import Label, read_labels, read_queries, write_labels

PEDESTRIAN = "0,1,0,0,1,0,0,0,0,0,1,0,1,0,0,0,0,0,0,0,0"
LINES = [
    "a.jpg$white Audi$This is a white Audi",
    f"b.jpg${PEDESTRIAN}$A male pedestrian under 18, standing sideways with a backpack.",
    "c.jpg$Truck$A Truck$red Hongyan Truck",
]


def write(tmp_path: Path, data: bytes, name: str = "labels.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_three_and_four_field_labels(tmp_path):
    labels = read_labels(write(tmp_path, "\n".join(LINES).encode()))
    assert labels == [
        Label("a.jpg", "white Audi", "This is a white Audi"),
        Label("b.jpg", PEDESTRIAN, "A male pedestrian under 18, standing sideways with a backpack."),
        Label("c.jpg", "Truck", "A Truck", "red Hongyan Truck"),
    ]
    assert [l.kind for l in labels] == ["vehicle", "pedestrian", "vehicle"]
    assert [l.to_line() for l in labels] == LINES


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_bom_crlf_blank_lines_and_trailing_whitespace(tmp_path, bom, eol):
    body = [b"", LINES[0].encode() + b"  \t", b"   ", LINES[1].encode(), b"", LINES[2].encode() + b" "]
    path = write(tmp_path, bom + eol.join(body) + eol + eol)
    labels = read_labels(path)
    assert [l.to_line() for l in labels] == LINES
    # Nothing silently dropped: one label per non-blank line.
    non_blank = [l for l in path.read_bytes().splitlines() if l.strip(b" \t\r\n\xef\xbb\xbf")]
    assert len(labels) == len(non_blank) == 3


def test_non_ascii_utf8_is_read(tmp_path):
    labels = read_labels(write(tmp_path, "é.jpg$white Audi$Ein weißer Audi — 白色奥迪\n".encode()))
    assert labels == [Label("é.jpg", "white Audi", "Ein weißer Audi — 白色奥迪")]


BAD_LINES = {
    "two fields": ("a.jpg$white Audi", "got 2"),
    "five fields": ("a.jpg$white Audi$A white Audi$white Audi Sedan$extra", "got 5"),
    "empty image name": (" $white Audi$A white Audi", "empty image name"),
    "empty attribute": ("a.jpg$ $A white Audi", "empty attribute"),
    "empty caption": ("a.jpg$white Audi$ ", "empty caption"),
    "empty completed": ("a.jpg$white Audi$A white Audi$ ", "empty completed"),
    "20 flags": ("a.jpg$" + PEDESTRIAN[2:] + "$A man", "20 flags"),
    "22 flags": ("a.jpg$" + PEDESTRIAN + ",0$A man", "22 flags"),
    "a flag of 2": ("a.jpg$" + PEDESTRIAN[:-1] + "2$A man", "flag 20 is '2'"),
    "trailing comma": ("a.jpg$" + PEDESTRIAN + ",$A man", "22 flags"),
}


@pytest.mark.parametrize("bad,expected", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_malformed_line_names_file_line_and_defect(tmp_path, bad, expected):
    # Line 5 counts the blank lines before it: the number is the physical line of the file.
    path = write(tmp_path, "\r\n".join([LINES[0], "", LINES[1], "  ", bad, LINES[2]]).encode())
    with pytest.raises(InputError) as e:
        read_labels(path)
    assert (e.value.path, e.value.line) == (str(path), 5)
    assert expected in e.value.defect
    assert str(path) in str(e.value) and ":5:" in str(e.value) and expected in str(e.value)


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_bytes_that_are_not_utf8_name_the_line(tmp_path, bom):
    path = write(tmp_path, bom + b"\n".join([LINES[0].encode(), b"", b"b.jpg$white Audi$caf\xe9 racer"]))
    with pytest.raises(InputError) as e:
        read_labels(path)
    assert (e.value.path, e.value.line) == (str(path), 3)
    assert "UTF-8" in e.value.defect and "column 21" in e.value.defect
    with pytest.raises(InputError):
        read_queries(path)


def test_write_refuses_a_field_with_the_separator_or_a_newline(tmp_path):
    for label in (Label("a.jpg", "white Audi", "A $5 car"), Label("a.jpg", "white Audi", "A\ncar")):
        with pytest.raises(ValueError):
            write_labels(tmp_path / "out.txt", [label])
    assert not list(tmp_path.iterdir())


def test_written_file_is_utf8_lf_without_bom(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    write_labels(path, [Label("é.jpg", "white Audi", "A white Audi", "white Audi Sedan")])
    assert path.read_bytes() == "é.jpg$white Audi$A white Audi$white Audi Sedan\n".encode()


# Fields as the format allows them: no '$', no line break, no leading/trailing whitespace
# (a BOM character is excluded too: at the start of a file it is indistinguishable from a BOM).
field = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="$\n\r\ufeff"), min_size=1).filter(
    lambda s: s == s.strip()
)
flag_vector = st.lists(st.sampled_from("01"), min_size=21, max_size=21).map(",".join)
attribute = st.one_of(flag_vector, field.filter(lambda s: not looks_like_flags(s)))
label = st.builds(Label, field, attribute, field, st.none() | field)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labels=st.lists(label, max_size=8), with_completed=st.sampled_from([None, True, False]))
def test_write_then_read_round_trips(tmp_path, labels, with_completed):
    if with_completed is not None:  # all four-field, all three-field, or (None) mixed
        labels = [replace(l, completed=(l.completed or l.caption) if with_completed else None) for l in labels]
    path = tmp_path / "round.txt"
    write_labels(path, labels)
    assert read_labels(path) == labels


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    queries=st.lists(field, max_size=8),
    bom=st.booleans(),
    eol=st.sampled_from(["\n", "\r\n"]),
    final_newline=st.booleans(),
    blank_every=st.integers(0, 3),
)
def test_read_queries_round_trips(tmp_path, queries, bom, eol, final_newline, blank_every):
    lines = []
    for i, q in enumerate(queries):
        if blank_every and i % blank_every == 0:
            lines.append(" \t")
        lines.append(q)
    text = eol.join(lines) + (eol if final_newline else "")
    path = write(tmp_path, (b"\xef\xbb\xbf" if bom else b"") + text.encode(), "queries.txt")
    if not queries:  # an empty or blank query file is a mistake, not zero queries
        with pytest.raises(InputError, match="no queries"):
            read_queries(path)
        return
    assert read_queries(path) == queries


def test_real_vehicle_labels_read_completely(shared_data):
    path = shared_data / "real_vehicle_labels_train.txt"
    labels = read_labels(path)
    non_blank = [l for l in path.read_text(encoding="utf-8-sig").splitlines() if l.strip()]
    assert len(labels) == len(non_blank) > 0
    assert all(l.completed and l.kind == "vehicle" for l in labels)


def test_atomic_open_failure_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.write("half-written new content")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_open_failure_on_a_new_file_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(tmp_path / "new.bin", "wb") as f:
            f.write(b"partial")
            raise KeyboardInterrupt
    assert not list(tmp_path.iterdir())


def test_atomic_writes_replace_and_leave_no_temp(tmp_path):
    path = tmp_path / "out.bin"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
