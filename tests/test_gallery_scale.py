"""benchmarks/gallery_scale.py at a toy size: every kind measured, the JSON contract of its last
line, the targets it reports on, and the extrapolation from two runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gallery_scale.py"


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_every_kind_is_measured_and_the_last_line_is_the_json(tmp_path):
    outputs = []
    for images in (3000, 6000):
        out = run("--images", str(images), "--dim", "64", "--queries", "300", "--tuning-queries", "400", "--single", "20",
                  "--exact-single", "3", "--budget", "0.01", "--workdir", str(tmp_path / f"w{images}"))
        outputs.append(tmp_path / f"{images}.txt")
        outputs[-1].write_text(out)
    result = json.loads(out.strip().splitlines()[-1])
    assert set(result["kinds"]) == {"flat", "ivfpq", "hnsw"} and result["images"] == 6000
    for kind, r in result["kinds"].items():
        assert {"build_s", "peak_rss_mib", "recall@10", "p50_ms", "p95_ms", "batch_queries_per_s"} <= set(r), kind
        assert r["recall@10"] >= (1.0 if kind == "flat" else 0.95), kind
    assert re.search(r"ivfpq +nprobe \d+, refine \d+", out) and re.search(r"hnsw +ef_search \d+", out)
    assert "budget 10 MiB" in out and "median cosine of a query to its neighbours (exact, 300 queries)" in out
    assert list((tmp_path / "w6000").iterdir()) == []  # what it wrote there goes unless --keep

    extrapolated = run("--extrapolate", *map(str, outputs))
    assert "extrapolation from 3,000 and 6,000 images x 64 dims" in extrapolated
    assert re.search(r"ivfpq\n  build_s .* 10,000,000: .* = ", extrapolated)
    assert "100,000,000 images: store" in extrapolated
