"""Gallery metadata: the sidecar CSV's parser (file and line of each defect) and the camera/time filter."""

from __future__ import annotations

import numpy as np
import pytest

from traffic_retrieval.core.fileio import InputError, UserError
from traffic_retrieval.core.metadata import NO_TIME, Filter, Metadata, parse_time, read_metadata, sidecar_path

NAMES = ["a.jpg", "b.jpg", "c.png", "d.jpg"]


def write(tmp_path, text: str):
    path = tmp_path / "gallery.metadata.csv"
    path.write_bytes(text.encode())
    return path


def test_a_sidecar_is_read_in_gallery_order_with_zones_bom_and_crlf(tmp_path):
    path = write(tmp_path, "\ufeffimage,camera,timestamp\r\nc.png,13,2024-05-01T08:30:00+02:00\r\n"
                           "a.jpg,12,2024-05-01T06:00:00Z\r\n\"b.jpg\",\"cam, north\",2024-05-01 06:00:01\r\n")
    meta = read_metadata(path, NAMES)
    assert list(meta.camera) == ["12", "cam, north", "13", ""]
    assert meta.time[0] == parse_time("2024-05-01T06:00:00+00:00")
    assert meta.time[2] - meta.time[0] == 30 * 60 * 10**6  # 08:30 at +02:00 is 06:30 UTC
    assert meta.time[1] - meta.time[0] == 10**6  # no zone: UTC
    assert meta.time[3] == NO_TIME and meta.known == 3


@pytest.mark.parametrize("body, line, defect", [
    ("image,camera,timestamp\na.jpg,12,2024-05-01T06:00:00Z\nzz.jpg,12,2024-05-01T06:00:00Z\n", 3,
     "unknown image 'zz.jpg': not in the gallery"),
    ("image,camera,timestamp\na.jpg,12,2024-05-01T06:00:00Z\nb.jpg,12,yesterday\n", 3, "bad timestamp 'yesterday'"),
    ("image,camera,timestamp\na.jpg,12,2024-13-01T06:00:00Z\n", 2, "bad timestamp"),
    ("image,camera,timestamp\na.jpg,12,2024-05-01T06:00:00Z\n\nb.jpg,1,2024-05-01T06:00:00Z\na.jpg,12,"
     "2024-05-01T07:00:00Z\n", 5, "duplicate row for 'a.jpg' (first on line 2)"),
    ("image,camera,timestamp\na.jpg,,2024-05-01T06:00:00Z\n", 2, "camera ''"),
    ("image,camera,timestamp\na.jpg,12\n", 2, "2 cells; expected 3"),
    ("name,camera,time\na.jpg,12,2024-05-01T06:00:00Z\n", 1, "expected image,camera,timestamp"),
])
def test_each_defect_is_one_error_naming_the_file_and_line(tmp_path, body, line, defect):
    path = write(tmp_path, body)
    with pytest.raises(InputError) as raised:
        read_metadata(path, NAMES)
    assert isinstance(raised.value, UserError) and raised.value.line == line, str(raised.value)
    assert str(raised.value).startswith(f"{path}:{line}: ") and defect in str(raised.value), str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_sidecar_sits_beside_the_gallery_folder(tmp_path):
    assert sidecar_path(tmp_path / "test" / "test_images") == tmp_path / "test" / "test_images.metadata.csv"


def test_filter_keeps_its_cameras_and_a_half_open_time_range():
    t = [parse_time(f"2024-05-01T0{h}:00:00Z") for h in range(5)]
    meta = Metadata(np.array(["12", "13", "14", "12", ""], dtype=object), np.array(t[:4] + [NO_TIME]))
    assert Filter().mask(None, 5).all() and not Filter().active
    assert Filter.parse("12, 14").mask(meta, 5).tolist() == [True, False, True, True, False]
    assert Filter.parse(after="2024-05-01T01:00:00Z", before="2024-05-01T03:00:00Z").mask(meta, 5).tolist() == \
        [False, True, True, False, False]
    assert Filter.parse(before="2024-05-01T09:00").mask(meta, 5).tolist() == [True, True, True, True, False]
    both = Filter.parse("12,13").both(Filter.parse("13,14", after="2024-05-01T00:30:00Z"))
    assert both.mask(meta, 5).tolist() == [False, True, False, False, False]
    with pytest.raises(UserError, match="need the gallery's metadata"):
        Filter.parse("12").mask(None, 5)
    for bad in ({"after": "soon"}, {"cameras": " , "}):
        with pytest.raises(UserError, match="--after 'soon': bad timestamp|--camera"):
            Filter.parse(**bad)


def test_synth_writes_a_sidecar_that_reads_back_for_every_test_image(tmp_path):
    from traffic_retrieval.core.images import list_images
    from traffic_retrieval.synthetic.generate import generate

    generate(tmp_path / "data", train=0, val=0, test=12, seed=4, workers=1, progress=False, metadata=True)
    images = tmp_path / "data" / "test" / "test_images"
    meta = read_metadata(sidecar_path(images), [p.name for p in list_images(images)])
    assert meta.known == 12 and set(meta.camera) <= {str(c) for c in range(1, 21)}
    assert (meta.time >= parse_time("2024-05-01T00:00:00Z")).all() and (meta.time < parse_time("2024-05-02")).all()
    generate(tmp_path / "plain", train=0, val=0, test=12, seed=4, workers=1, progress=False)
    assert not sidecar_path(tmp_path / "plain" / "test" / "test_images").exists()
