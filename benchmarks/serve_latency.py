"""Latency of /api/search through a real uvicorn server on 127.0.0.1, sequential queries.

The gallery is random unit embeddings (the index is what matters, not the pictures); the text
encoder is the real tiny model's, so each request pays routing, encoding, search and JSON.

    .venv/bin/python benchmarks/serve_latency.py --images 20000 --requests 300
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np
import torch

from traffic_retrieval.core.vocab import packaged_vocabulary
from traffic_retrieval.retrieval.models import ModelSettings, TINY_MODEL, load_model
from traffic_retrieval.retrieval.gallery import Gallery
from traffic_retrieval.apps.web import create_app, running

QUERIES = [
    "a red SUV", "This is a grey Chery Sedan.", "This is a white Audi.", "a blue Truck",
    "A female pedestrian who is between 18 and 60 years old, with her back to the camera, carrying a backpack.",
    "A male pedestrian in a long coat and boots.", "a black Microbus", "someone with a hat and glasses",
]
KINDS = ("auto", "vehicle", "pedestrian")


def random_gallery(n: int, dim: int, seed: int = 0) -> Gallery:
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    kinds = rng.choice(np.array(["vehicle", "pedestrian"], dtype=object), n)
    return Gallery([f"{i:06d}.jpg" for i in range(n)], emb, np.ones(n, bool), kinds, folder=Path(tempfile.gettempdir()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--max-seconds", type=float, default=120.0, help="stop early after this long")
    args = p.parse_args()

    loaded = load_model(ModelSettings(TINY_MODEL, None))
    dim = loaded.model.text_projection.shape[1]
    app = create_app(random_gallery(args.images, dim), loaded, packaged_vocabulary())
    wall, server = [], []
    with running(app) as url:
        conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)
        deadline = time.monotonic() + args.max_seconds
        for i in range(args.warmup + args.requests):
            query = urlencode({"q": QUERIES[i % len(QUERIES)], "kind": KINDS[i % len(KINDS)], "k": 10})
            start = time.perf_counter()
            conn.request("GET", f"/api/search?{query}")
            response = conn.getresponse()
            body = json.loads(response.read())
            elapsed = 1000 * (time.perf_counter() - start)
            if response.status != 200 or len(body["results"]) != 10:
                raise SystemExit(f"bad answer {response.status}: {body}")
            if i >= args.warmup:
                wall.append(elapsed)
                server.append(body["ms"])
            if time.monotonic() > deadline:
                break
        conn.close()
    w, s = np.array(wall), np.array(server)
    print(f"{len(w)} sequential queries, {args.images} images x {dim} dims, torch threads {torch.get_num_threads()}")
    print(f"round trip  p50 {np.percentile(w, 50):.1f} ms  p95 {np.percentile(w, 95):.1f} ms  max {w.max():.1f} ms")
    print(f"in server   p50 {np.percentile(s, 50):.1f} ms  p95 {np.percentile(s, 95):.1f} ms")


if __name__ == "__main__":
    main()
