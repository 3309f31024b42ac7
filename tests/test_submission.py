import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traffic_retrieval.core.submission import (
    SubmissionError,
    read_submission,
    validate_submission,
    write_submission,
)

QUERIES = ["This is a white Audi.", "A male pedestrian, 18-60.", "This is a grey Chery Sedan."]
GALLERY = {f"{i}.jpg" for i in range(40)}


def names(start):
    return [f"{i}.jpg" for i in range(start, start + 10)]


def valid():
    return [(q, names(10 * i)) for i, q in enumerate(QUERIES)]


def test_valid_submission_passes_with_trimmed_text():
    results = valid()
    results[1] = ("  " + results[1][0] + " \n", results[1][1])
    validate_submission(results, QUERIES, GALLERY)


@pytest.mark.parametrize(
    "defect, match",
    [
        (lambda r: r.__setitem__(1, (QUERIES[2], r[1][1])), r"query 1 .*expected the text"),
        (lambda r: r.__setitem__(2, (QUERIES[2], r[2][1][:9])), r"query 2 .*9 image names, expected exactly 10"),
        (lambda r: r.__setitem__(2, (QUERIES[2], r[2][1] + ["x.jpg"])), r"query 2 .*11 image names"),
        (lambda r: r[1][1].__setitem__(5, r[1][1][0]), r"query 1 .*'10.jpg' more than once"),
        (lambda r: r[2][1].__setitem__(9, "nope.jpg"), r"query 2 .*'nope.jpg' is not an image of the gallery"),
        (lambda r: r.pop(), r"answers 2 queries, expected 3: query 2 .*Chery.* is missing"),
        (lambda r: r.append(("extra", names(0))), r"answers 4 queries, expected 3: query 3 \('extra'\) is extra"),
    ],
    ids=["order", "too-few-names", "too-many-names", "duplicate", "not-in-gallery", "missing", "extra"],
)
def test_each_defect_names_the_first_offending_query(defect, match):
    results = valid()
    defect(results)
    with pytest.raises(SubmissionError, match=match):
        validate_submission(results, QUERIES, GALLERY)


def test_first_offending_query_is_reported():
    results = valid()
    results[2][1][0] = "nope.jpg"
    results[1][1][0] = "nope.jpg"
    with pytest.raises(SubmissionError, match=r"^query 1 "):
        validate_submission(results, QUERIES, GALLERY)


def test_gallery_check_only_when_gallery_given():
    results = valid()
    results[0][1][0] = "elsewhere.jpg"
    validate_submission(results, QUERIES)


def test_k_is_a_parameter():
    results = [(q, n[:5]) for q, n in valid()]
    validate_submission(results, QUERIES, k=5)
    with pytest.raises(SubmissionError, match="expected exactly 10"):
        validate_submission(results, QUERIES)


def test_invalid_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "sub.json"
    path.write_text('{"results": [\n  {"text": "a", "image_names": [}\n]}')
    with pytest.raises(SubmissionError, match=rf"{path}:2:\d+: invalid JSON"):
        read_submission(path)


def test_non_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "sub.json"
    path.write_bytes(b'{"results": [\n{"text": "\xff"}]}')
    with pytest.raises(SubmissionError, match=rf"{path}:2:\d+: bytes that are not UTF-8"):
        read_submission(path)


@pytest.mark.parametrize(
    "document, match",
    [
        ([], r"expected a JSON object"),
        ({"result": []}, r"expected a JSON object"),
        ({"results": [{"text": "a", "image_names": []}, "b"]}, r"query 1: expected an object"),
        ({"results": [{"text": 3, "image_names": []}]}, r'query 0: "text" must be a string'),
        ({"results": [{"text": "a", "image_names": ["x", 1]}]}, r"query 0 \('a'\): \"image_names\" must be"),
        ({"results": [{"text": "a"}]}, r"query 0 \('a'\): \"image_names\" must be"),
    ],
)
def test_wrong_shape_is_rejected_on_read(tmp_path, document, match):
    path = tmp_path / "sub.json"
    path.write_text(json.dumps(document))
    with pytest.raises(SubmissionError, match=match):
        read_submission(path)


def test_read_accepts_bom_and_crlf(tmp_path):
    path = tmp_path / "sub.json"
    document = {"results": [{"text": QUERIES[0], "image_names": names(0)}]}
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(document, indent=1).replace("\n", "\r\n").encode())
    assert read_submission(path) == [(QUERIES[0], names(0))]


def test_write_is_the_challenge_format(tmp_path):
    path = tmp_path / "out" / "sub.json"
    write_submission(path, valid())
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document == {"results": [{"text": q, "image_names": n} for q, n in valid()]}
    assert [p.name for p in path.parent.iterdir()] == ["sub.json"]  # no temporary left behind


_name = st.text(min_size=1, max_size=12).map(lambda s: s + ".jpg")


@st.composite
def submissions(draw):
    texts = draw(st.lists(st.text(max_size=30), max_size=6))
    return [(t, draw(st.lists(_name, min_size=10, max_size=10, unique=True))) for t in texts]


@settings(max_examples=60, deadline=None)
@given(results=submissions())
def test_round_trip_and_validates(tmp_path_factory, results):
    path = tmp_path_factory.mktemp("sub") / "sub.json"
    write_submission(path, results)
    back = read_submission(path)
    assert back == results
    validate_submission(back, [t for t, _ in results], {n for _, ns in results for n in ns})
