"""serve: the JSON API, the page's files, and that nothing outside the gallery's name table is served."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from test_search import draw_gallery, random_gallery  # noqa: E402 (tests/ is on sys.path under pytest)
from traffic_retrieval.core.vocab import packaged_vocabulary
from traffic_retrieval.retrieval.models import ModelSettings, load_model
from traffic_retrieval.core.routing import DEFAULT_VEHICLE_PROMPT
from traffic_retrieval.retrieval.gallery import Gallery
from traffic_retrieval.apps.web import MAX_QUERY, allowed_hosts, create_app, running


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A drawn gallery whose name table also lists a symlink to a file outside the folder."""
    root = tmp_path_factory.mktemp("serve")
    folder = draw_gallery(root / "gallery", n=3)
    secret = root / "secret.jpg"
    Image.new("RGB", (50, 30), "red").save(secret)
    (folder / "escape.jpg").symlink_to(secret)
    names = sorted(p.name for p in folder.iterdir())
    emb = random_gallery(folder, len(names)).embeddings
    kinds = np.array(["pedestrian" if n.startswith("person") else "vehicle" for n in names], dtype=object)
    gallery = Gallery(names, emb, np.ones(len(names), bool), kinds, folder=folder)
    app = create_app(gallery, load_model(ModelSettings("TR-ViT-Tiny", None)), packaged_vocabulary())
    return TestClient(app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False), gallery, secret.read_bytes()


@pytest.fixture(scope="module")
def client(setup) -> TestClient:
    return setup[0]


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="q"' in page.text and "/static/app.js" in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    info = client.get("/api/info").json()
    assert info["images"] == 7 and info["vehicle_prompt"] == DEFAULT_VEHICLE_PROMPT


def test_search_routes_enhances_filters(client):
    body = client.get("/api/search", params={"q": "a red SUV", "k": 4}).json()
    assert body["kind"] == "vehicle" and body["text"] == "a red SUV" + DEFAULT_VEHICLE_PROMPT
    assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4]
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(r["url"] == "/images/" + quote(r["name"]) for r in body["results"])

    plain = client.get("/api/search", params={"q": "a red SUV", "prompt": "0"}).json()
    assert plain["text"] == "a red SUV" and plain["prompt"] is False

    people = client.get("/api/search", params={"q": "a red SUV", "kind": "pedestrian", "k": 100}).json()
    assert people["kind"] == "pedestrian" and people["text"] == "a red SUV"
    assert sorted(r["name"] for r in people["results"]) == ["person0.png", "person1.png", "person2.png"]


def test_serves_gallery_images_by_name(client, setup):
    gallery = setup[1]
    response = client.get("/images/car1.jpg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content == (gallery.folder / "car1.jpg").read_bytes()


@pytest.mark.parametrize("path", [
    "/images/../secret.jpg",
    "/images/..%2fsecret.jpg",
    "/images/%2e%2e%2fsecret.jpg",
    "/images/%2E%2E%2Fsecret.jpg",
    "/images/%252e%252e%252fsecret.jpg",
    "/images/..%252fsecret.jpg",
    "/images/%2e%2e%5csecret.jpg",
    "/images/..\\secret.jpg",
    "/images/escape.jpg",  # in the name table, but a symlink out of the folder
    "/images/%2fetc%2fpasswd",
    "/images//etc/passwd",
    "/images/%252fetc%252fpasswd",
    "/images/car0.jpg%00.png",
    "/images/",
    "/static/..%2fserve.py",
    "/static/%2e%2e/serve.py",
])
def test_nothing_outside_the_gallery_is_served(client, setup, path):
    secret = setup[2]
    response = client.get(path)
    assert 400 <= response.status_code < 500, path
    assert secret not in response.content and b"import" not in response.content
    assert "error" in response.json() or "detail" in response.json()


def test_absolute_path_of_a_gallery_file_is_not_a_name(client, setup):
    absolute = str(setup[1].folder / "car0.jpg")
    for path in (f"/images/{quote(absolute, safe='')}", f"/images/{quote(quote(absolute, safe=''), safe='')}"):
        assert client.get(path).status_code == 404


@pytest.mark.parametrize("params", [
    {},
    {"q": ""},
    {"q": "   "},
    {"q": "x" * (MAX_QUERY + 1)},
    {"q": "a red SUV", "k": "0"},
    {"q": "a red SUV", "k": "10000"},
    {"q": "a red SUV", "k": "-1"},
    {"q": "a red SUV", "k": "ten"},
    {"q": "a red SUV", "kind": "foo"},
    {"q": "a red SUV", "prompt": "maybe"},
])
def test_bad_parameters_get_a_4xx_json_message(client, params):
    response = client.get("/api/search", params=params)
    assert 400 <= response.status_code < 500
    message = response.json()["error"]
    assert isinstance(message, str) and message and "Traceback" not in response.text


def test_longest_query_is_accepted(client):
    assert client.get("/api/search", params={"q": "a" * MAX_QUERY}).status_code == 200


def test_an_unexpected_failure_is_a_json_500_without_a_trace(setup, monkeypatch):
    client, gallery, _ = setup

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(gallery, "search", broken)
    response = client.get("/api/search", params={"q": "a red SUV"})
    assert response.status_code == 500 and response.json() == {"error": "internal error"}


values = st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=600),
                   st.integers(-10**6, 10**6).map(str), st.sampled_from(["auto", "vehicle", "pedestrian", "1", "0"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(["q", "k", "kind", "prompt", "x"]), values, max_size=5))
def test_fuzzed_parameters_never_get_a_5xx(client, params):
    response = client.get("/api/search", params=params)
    assert response.status_code < 500, (params, response.text)
    assert response.status_code == 200 or "error" in response.json()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=80), name=st.binary(max_size=40))
def test_fuzzed_raw_bytes_never_get_a_5xx(client, raw, name):
    assert client.get("/api/search?q=" + quote(raw, safe="=&%")).status_code < 500
    assert client.get("/images/" + quote(name, safe="%/.")).status_code < 500


def test_running_serves_on_loopback(setup):
    app = setup[0].app
    with running(app) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/api/info", timeout=10) as response:
            assert json.load(response)["images"] == 7


@pytest.mark.parametrize("host, answered", [
    ("127.0.0.1:8000", True), ("localhost:8000", True), ("LOCALHOST", True), ("[::1]:8000", True),
    ("evil.example:8000", False), ("evil.example", False), ("127.0.0.1.evil.example", False), ("", False),
    ("localhost.:8000", False),
])
def test_only_the_host_names_of_the_bound_address_are_answered(client, host, answered):
    """DNS rebinding: a page of evil.example, its name rebound to 127.0.0.1, must not read the API."""
    for path in ("/api/search?q=red", "/api/info", "/images/car1.jpg", "/"):
        response = client.get(path, headers={"host": host})
        assert (response.status_code == 200) == answered, (path, host, response.status_code)
        if not answered:
            assert response.status_code == 400 and "unknown Host header" in response.json()["error"]


def test_serve_answers_the_names_it_is_told_to(setup):
    _, gallery, _ = setup
    assert allowed_hosts("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts("192.168.1.5") == {"192.168.1.5"}
    assert allowed_hosts("0.0.0.0", ["Box.lan"]) == {"0.0.0.0", "127.0.0.1", "localhost", "::1", "box.lan"}
    loaded = load_model(ModelSettings("TR-ViT-Tiny", None))
    for hosts, answered in ((allowed_hosts("0.0.0.0", ["box.lan"]), True), (allowed_hosts("0.0.0.0"), False),
                            (allowed_hosts("127.0.0.1", ["*"]), True)):
        client = TestClient(create_app(gallery, loaded, packaged_vocabulary(), hosts=hosts))
        assert (client.get("/api/info", headers={"host": "box.lan:8000"}).status_code == 200) == answered


def test_serve_command_binds_its_host_names(setup, monkeypatch, capsys):
    import uvicorn

    from traffic_retrieval.apps import cli

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app, **kwargs))
    folder = setup[1].folder
    assert cli.main(["serve", "--gallery", str(folder), "--pretrained", "none", "--cache-dir", "", "--workers", "0",
                     "--host", "0.0.0.0", "--allowed-host", "box.lan"]) == 0
    assert served["host"] == "0.0.0.0" and "answering the Host names 0.0.0.0, 127.0.0.1, ::1, box.lan, localhost" \
        in capsys.readouterr().out
    client = TestClient(served["app"])
    assert client.get("/api/info", headers={"host": "box.lan:8000"}).status_code == 200
    assert client.get("/api/info", headers={"host": "evil.example"}).status_code == 400


def test_search_filters_by_camera_and_time_inside_the_search(tmp_path):
    from traffic_retrieval.core.metadata import Filter, Metadata, parse_time

    gallery = random_gallery(tmp_path, 60)
    start = parse_time("2024-05-01T00:00:00Z")
    gallery.metadata = Metadata(np.array([str(i % 4) for i in range(60)], dtype=object),
                                start + np.arange(60, dtype=np.int64) * 3600 * 10**6)
    app = create_app(gallery, load_model(ModelSettings("TR-ViT-Tiny", None)), packaged_vocabulary(),
                     where=Filter.parse(before="2024-05-02T12:00:00Z"))  # the first 36 images
    client = TestClient(app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False)
    assert client.get("/api/info").json()["cameras"] == ["0", "1", "2", "3"]
    assert 'id="filters" hidden' in client.get("/").text  # the page shows it where /api/info counts metadata
    body = client.get("/api/search", params={"q": "a person", "k": 20, "camera": "1,3",
                                             "after": "2024-05-01T06:00:00Z"}).json()
    allowed = {f"{i:06d}.jpg" for i in range(6, 36) if i % 4 in (1, 3)}
    assert len(body["results"]) == 15 and {r["name"] for r in body["results"]} == allowed
    assert body["where"] == "camera 1,3, from 2024-05-01T06:00:00Z, before 2024-05-02T12:00:00Z"
    bad = client.get("/api/search", params={"q": "a person", "after": "noon"})
    assert bad.status_code == 422 and "bad timestamp" in bad.json()["error"] and "--" not in bad.json()["error"]
    gallery.metadata = None
    missing = client.get("/api/search", params={"q": "a person", "camera": "1"})
    assert missing.status_code == 422 and "metadata" in missing.json()["error"]
